"""Access lines in the combined log format plus a duration, which the `access` ingest pipeline parses.

Written under the `proxy` component (the log shipper routes it to that pipeline).
The path is logged without its query string, and nothing secret is ever in a path:
connect tokens travel in the WebSocket sub-protocol header, never in a URL.
"""
from __future__ import annotations

import time

from asci_core.jsonlog import get_logger

log = get_logger("proxy")


def access_line(client: str, user: str | None, method: str, path: str, version: str, status: int,
                size: int | None, user_agent: str, duration: float) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    agent = (user_agent or "-").replace('"', "'")[:300]
    return (f'{client or "-"} - {user or "-"} [{stamp}] "{method} {path or "/"} HTTP/{version}" {status} '
            f'{size if size is not None else "-"} "-" "{agent}" {duration:.3f}')


def write(client: str, user: str | None, method: str, path: str, version: str, status: int,
          size: int | None, user_agent: str, duration: float) -> None:
    line = access_line(client, user, method, path, version, status, size, user_agent, duration)
    log.info(line, client=client, user=user or "", method=method, path=path, status=status,
             duration=round(duration, 6))
