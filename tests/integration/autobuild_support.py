"""Pieces for autobuild's integration tests: real git repositories on disk, signed Bitbucket
payloads, a real `asci serve` process, and the loopback stand-in for Slack."""
from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import git
import requests
import yaml

from tests.support.side_config import shared_services

ASCI = str(Path(sys.executable).with_name("asci"))
SERVER_HOST = "https://bitbucket.test.invalid"
CLOUD_HOST = "https://bitbucket.org"
SECRET = "test-webhook-secret"


class GitRemote:
    """Bare repositories under ROOT/PROJECT/slug.git, pushed to from a work tree like a developer would."""

    def __init__(self, root: Path):
        self.root = root

    def create(self, name: str, files: dict[str, str]) -> "WorkTree":
        project, slug = name.split("/")
        bare = self.root / project / f"{slug}.git"
        git.Repo.init(bare, bare=True, initial_branch="main")
        work = self.root / "work" / project / slug
        repo = git.Repo.init(work, initial_branch="main")
        with repo.config_writer() as cw:
            cw.set_value("user", "name", "Test Developer")
            cw.set_value("user", "email", "dev@test.invalid")
        repo.create_remote("origin", bare.as_uri())
        tree = WorkTree(repo)
        tree.commit(files, "initial")
        return tree


class WorkTree:
    def __init__(self, repo: git.Repo):
        self.repo = repo

    def commit(self, files: dict[str, str], message: str) -> str:
        for path, text in files.items():
            target = Path(self.repo.working_tree_dir) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            self.repo.index.add([path])
        sha = self.repo.index.commit(message).hexsha
        self.repo.remote("origin").push("main")
        return sha

    def tag(self, name: str) -> str:
        self.repo.create_tag(name, message=f"release {name}")
        self.repo.remote("origin").push(name)
        return self.repo.head.commit.hexsha

    def tag_object(self, name: str) -> str:
        """The hash of an annotated tag's object: what Bitbucket Server sends as toHash."""
        return self.repo.tags[name].tag.hexsha

    def move_tag(self, name: str) -> str:
        """Force-move a tag to HEAD and force-push it, as `git tag -f` + `git push -f` would."""
        self.repo.create_tag(name, message=f"release {name} (moved)", force=True)
        self.repo.remote("origin").push(f"+refs/tags/{name}:refs/tags/{name}")
        return self.repo.head.commit.hexsha


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def server_payload(name: str, ref: str, commit: str | None, *, ref_type: str = "TAG", change: str = "ADD",
                   host: str = SERVER_HOST) -> dict[str, Any]:
    project, slug = name.split("/")
    return {
        "eventKey": "repo:refs_changed",
        "date": "2026-11-26T06:00:00+0000",
        "actor": {"name": "dev", "displayName": "Developer"},
        "repository": {
            "slug": slug, "name": slug, "project": {"key": project, "name": project},
            "links": {"clone": [{"href": f"{host}/scm/{project.lower()}/{slug}.git", "name": "http"}]},
        },
        "changes": [{
            "ref": {"id": f"refs/{'tags' if ref_type == 'TAG' else 'heads'}/{ref}", "displayId": ref,
                    "type": ref_type},
            "refId": f"refs/tags/{ref}",
            "fromHash": "0" * 40 if change == "ADD" else "1" * 40,
            "toHash": "0" * 40 if change == "DELETE" else commit,
            "type": change,
        }],
    }


def cloud_payload(name: str, ref: str, commit: str | None, *, kind: str = "tag", closed: bool = False,
                  host: str = CLOUD_HOST) -> dict[str, Any]:
    new = None if closed else {"type": kind, "name": ref, "target": {"type": "commit", "hash": commit}}
    old = {"type": kind, "name": ref, "target": {"hash": "1" * 40}} if closed else None
    return {
        "actor": {"display_name": "Developer"},
        "repository": {"full_name": name, "name": name.split("/")[1], "links": {"html": {"href": f"{host}/{name}"}}},
        "push": {"changes": [{"new": new, "old": old, "created": not closed, "closed": closed, "forced": False}]},
    }


def deliver(base_url: str, payload: dict | bytes, *, event: str = "repo:refs_changed", secret: str = SECRET,
            request_id: str | None = None, signature: str | None = None, cloud: bool = False,
            path: str = "/hooks/bitbucket") -> requests.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Event-Key": event}
    if signature != "":
        headers["X-Hub-Signature"] = signature or sign(body, secret)
    rid = request_id or hashlib.sha1(body + str(time.time_ns()).encode()).hexdigest()
    if cloud:
        headers.update({"X-Request-UUID": rid, "X-Hook-UUID": "hook-1", "X-Attempt-Number": "1"})
    else:
        headers["X-Request-Id"] = rid
    return requests.post(f"{base_url}{path}", data=body, headers=headers, timeout=30)


def autobuild_config(path: Path, *, config: Any, workdir: Path, git_root: Path, port: int,
                     repositories: list[dict[str, Any]], slack_url: str | None = None, notify_success: bool = False,
                     concurrency: int = 2, state_dir: Path | None = None, registry_port: int | None = None,
                     retry_base: float = 0.5, max_attempts: int = 8,
                     server_host: dict[str, Any] | None = None, autobuild: dict[str, Any] | None = None,
                     server: dict[str, Any] | None = None) -> Path:
    clone = f"file://{git_root}/{{project}}/{{slug}}.git"
    data: dict[str, Any] = {
        "server": {"port": port, **(server or {})},
        "stack": {"state_dir": str(state_dir or config.stack.state_dir), **shared_services(config)},
        "autobuild": {
            "workdir": str(workdir),
            "concurrency": concurrency,
            "retry_base_seconds": retry_base,
            "retry_max_seconds": 4,
            "max_attempts": max_attempts,
            "hosts": [
                {"name": "bitbucket", "kind": "server", "url": SERVER_HOST, "clone_url": clone, **(server_host or {})},
                {"name": "cloud", "kind": "cloud", "url": CLOUD_HOST, "clone_url": clone},
            ],
            "repositories": [{"webhook_secret": SECRET, **r} for r in repositories],
            **(autobuild or {}),
        },
        "slack": {"notify_success": notify_success, **({"webhook_url": slack_url} if slack_url else {})},
    }
    if registry_port is not None:
        data["stack"]["registry"]["port"] = registry_port
    path.write_text(yaml.safe_dump(data))
    return path


class Serve:
    """A real `asci serve` process."""

    def __init__(self, config: Path, port: int, log_path: Path):
        self.config, self.port, self.log_path = config, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Serve":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([ASCI, "-c", str(self.config), "serve"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"asci serve did not start:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def build(self, build_id: int) -> dict[str, Any]:
        return requests.get(f"{self.url}/builds/{build_id}", timeout=10).json()

    def builds(self, **params: str) -> list[dict[str, Any]]:
        return requests.get(f"{self.url}/builds", params={"limit": "1000", **params}, timeout=10).json()["builds"]

    def wait(self, build_id: int, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            build = self.build(build_id)
            if build["status"] in ("succeeded", "failed", "skipped"):
                return build
            time.sleep(0.2)
        raise AssertionError(f"build {build_id} did not finish in {timeout}s: {self.build(build_id)}")

    def log(self, build_id: int) -> str:
        return requests.get(f"{self.url}/builds/{build_id}/log", timeout=10).text


class SlackReceiver:
    """The one allowed stand-in: records what Slack's incoming webhook would have received."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.messages.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/test"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(self.messages)
