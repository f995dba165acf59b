"""The search engine: an embedded OpenSearch 2.19 node on loopback (tools/search-engine).

Production points `stack.search.url` at the site's Elasticsearch with
`managed: false`; everything that talks to it only uses the REST API.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlparse

import requests

from asci_core.stack.part import Part, Probe, Started, StartError

MAIN_CLASS = "org.asci.search.SearchEngine"
# How long one readiness question may wait for the cluster to reach yellow: short, so a caller polls.
HEALTH_WAIT = "1s"


@dataclass(frozen=True)
class Readiness:
    ready: bool  # health yellow or green and the ingest pipelines readable: usable
    state_recovered: bool  # the cluster state, pipelines included, is loaded (some index may still be red)
    detail: str = ""


Getter = Callable[[str, "dict[str, str] | None"], "tuple[int, Any]"]


def readiness(get: Getter) -> Readiness:
    """Whether the engine is usable, and if not, whether its cluster state is still being recovered.

    A node answers HTTP well before it has recovered its cluster state after a crash (seconds to
    a minute later); until then `_bulk` calls installed pipelines missing. A red cluster whose state
    is recovered (some index lost its primary) is a lasting fault, not a recovery: told apart by
    the "state not recovered" global block. GET returns (status, JSON body or None) and raises
    `requests.RequestException` when nothing answers.
    """
    try:
        status, health = get("/_cluster/health", {"wait_for_status": "yellow", "timeout": HEALTH_WAIT})
    except requests.RequestException as exc:
        return Readiness(False, False, f"no answer from _cluster/health ({type(exc).__name__})")
    if status in (401, 403):
        # A site's user without cluster monitoring rights: nothing to wait on, as before this check.
        return Readiness(True, True, f"cluster health not readable with these credentials (HTTP {status})")
    colour = health.get("status") if isinstance(health, dict) else None
    if status == 200 and colour in ("yellow", "green") and not health.get("timed_out"):
        try:
            status, _ = get("/_ingest/pipeline", None)
        except requests.RequestException as exc:
            return Readiness(False, True, f"no answer from _ingest/pipeline ({type(exc).__name__})")
        if status not in (200, 404, 401, 403):  # 404: none installed; 401/403: not ours to read
            return Readiness(False, True, f"ingest pipelines not readable yet (HTTP {status})")
        return Readiness(True, True, f"health {colour}")
    detail = f"cluster state not recovered yet (health {colour or 'unknown'}, HTTP {status})"
    if colour != "red":
        return Readiness(False, False, detail)
    try:
        status, blocks = get("/_cluster/state/blocks", None)
    except requests.RequestException:
        return Readiness(False, False, detail)
    if status == 200 and isinstance(blocks, dict) and not (blocks.get("blocks") or {}).get("global"):
        return Readiness(False, True, "cluster health red with its state recovered (an index has no primary)")
    if status in (401, 403):  # cannot tell a recovery from a lasting fault: do not wait without limit
        return Readiness(False, True, f"{detail}; cluster blocks not readable (HTTP {status})")
    return Readiness(False, False, detail)


class SearchEnginePart(Part):
    name = "search"
    order = 40

    @property
    def settings(self):
        return self.config.stack.search

    @property
    def managed(self) -> bool:
        return self.settings.managed

    @property
    def address(self) -> str:
        return self.settings.url

    @property
    def start_timeout(self) -> float:
        return self.settings.start_timeout

    def _auth(self) -> tuple[str, str] | None:
        if self.settings.username and self.settings.password:
            return (self.settings.username, self.settings.password.reveal())
        return None

    def _get(self, path: str, params: dict[str, str] | None) -> tuple[int, Any]:
        resp = requests.get(f"{self.settings.url.rstrip('/')}{path}", params=params, timeout=5, auth=self._auth())
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, None

    def _answers(self) -> tuple[dict[str, Any] | None, str]:
        """The node's `GET /` info, or why there is none."""
        try:
            resp = requests.get(self.settings.url, timeout=3, auth=self._auth())
            info = resp.json() if resp.ok else None
        except (requests.RequestException, ValueError) as exc:
            return None, f"no answer ({type(exc).__name__})"
        if not isinstance(info, dict) or "version" not in info:
            return None, f"not an Elasticsearch API (HTTP {resp.status_code})"
        return info, ""

    def probe(self) -> Probe:
        # Up means usable: answering HTTP is not enough while the cluster state is still recovering.
        info, why = self._answers()
        if info is None:
            return Probe(False, detail=why)
        version = info["version"]
        name = f"{version.get('distribution', 'elasticsearch')} {version.get('number')}"
        ready = readiness(self._get)
        if not ready.ready:
            return Probe(False, version=name, detail=f"answering, but {ready.detail}")
        return Probe(True, version=name)

    def start(self) -> Started:
        info, _ = self._answers()
        if info is not None:
            # Another node holds the port and is recovering: a second one could not bind it anyway.
            raise StartError(f"a search engine already answers at {self.settings.url} but its cluster state is "
                             "not recovered yet; run `asci stack up` again once it is")
        url = urlparse(self.settings.url)
        if url.hostname not in ("127.0.0.1", "localhost") or url.scheme != "http":
            raise StartError(f"a managed search engine serves http on loopback only; {self.settings.url} is not "
                             "(set stack.search.managed: false to use a site's Elasticsearch)")
        java = shutil.which("java")
        if java is None:
            raise StartError("java is not installed (Debian package openjdk-17-jre-headless)")
        classpath, jvm_options = self._classpath()
        home = self.state_dir / "search-engine"
        home.mkdir(parents=True, exist_ok=True)
        heap = f"{self.settings.heap_mb}m"
        return self.launch([
            java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseSerialGC", "-Djava.awt.headless=true", *jvm_options,
            "-cp", classpath, MAIN_CLASS,
            "--home", str(home), "--host", "127.0.0.1",
            "--http-port", str(url.port or 9200), "--transport-port", str(self.settings.transport_port),
        ])

    def _classpath(self) -> tuple[str, list[str]]:
        """Build the launcher if its sources changed (a no-op otherwise), then read its classpath and JVM options."""
        launcher = self.settings.launcher_dir
        build = launcher / "build.sh"
        if not build.exists():
            raise StartError(f"search-engine launcher not found in {launcher}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            result = subprocess.run(["bash", str(build)], cwd=launcher, stdout=log, stderr=subprocess.STDOUT)
        target = launcher / "target"
        if result.returncode != 0 or not (target / "classpath.txt").exists():
            raise StartError(f"building the search-engine launcher failed (exit {result.returncode})")
        options = target / "jvm-options.txt"
        # The class-data cache written at build time halves start-up; without it the JVM just starts slower.
        extra = options.read_text().split() if options.exists() else []
        return (target / "classpath.txt").read_text().strip(), extra
