"""The search engine: an embedded OpenSearch 2.19 node on loopback (tools/search-engine).

Production points `stack.search.url` at the site's Elasticsearch with
`managed: false`; everything that talks to it only uses the REST API.
"""
from __future__ import annotations

import shutil
import subprocess
from urllib.parse import urlparse

import requests

from asci_core.stack.part import Part, Probe, Started, StartError

MAIN_CLASS = "org.asci.search.SearchEngine"


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

    def probe(self) -> Probe:
        auth = None
        if self.settings.username and self.settings.password:
            auth = (self.settings.username, self.settings.password.reveal())
        try:
            resp = requests.get(self.settings.url, timeout=3, auth=auth)
            info = resp.json() if resp.ok else None
        except (requests.RequestException, ValueError) as exc:
            return Probe(False, detail=f"no answer ({type(exc).__name__})")
        if not isinstance(info, dict) or "version" not in info:
            return Probe(False, detail=f"not an Elasticsearch API (HTTP {resp.status_code})")
        version = info["version"]
        return Probe(True, version=f"{version.get('distribution', 'elasticsearch')} {version.get('number')}")

    def start(self) -> Started:
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
