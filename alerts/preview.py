"""A loopback stand-in for Slack that only records: what `asci alerts test` would have sent."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1024 * 1024


class Capture:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                try:
                    capture.posts.append(json.loads(self.rfile.read(length)))
                except ValueError:
                    capture.posts.append({"text": "(not JSON)"})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/preview"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Capture":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def describe(post: dict[str, Any]) -> str:
    """A Slack attachment as a person reads it."""
    lines: list[str] = []
    for attachment in post.get("attachments", []):
        lines.append(f"== {attachment.get('title', '')}" + (f"  <{attachment['title_link']}>"
                                                             if attachment.get("title_link") else ""))
        if attachment.get("text"):
            lines.append(attachment["text"])
        for f in attachment.get("fields", []):
            lines.append(f"   {f.get('title')}: {f.get('value')}")
    return "\n".join(lines)
