"""Connection limits for `asci serve`: slow headers time out, idle keep-alives end, and the
number of open connections is capped.

aiohttp waits forever for a request's headers and keeps idle connections for an hour,
so a handful of clients that connect and stall can hold every file descriptor. The
guard sits between asyncio and aiohttp's protocol: it counts connections, answers 503
beyond the cap, and closes a connection whose first request headers (up to the blank
line) have not arrived within the header timeout. Later requests on a kept-alive
connection are bounded by aiohttp's keep-alive timeout, set to the idle timeout here.
Bodies are bounded by the handlers that read them.

`asci serve` sets the limits on the application (`app[LIMITS_KEY]`) from the `server` section.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

TOO_MANY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n"
            b"Connection: close\r\nRetry-After: 5\r\n\r\ntoo many open connections\r\n")
TOO_SLOW = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 34\r\n"
            b"Connection: close\r\n\r\nrequest headers arrived too slowly\r\n")
END_OF_HEADERS = b"\r\n\r\n"


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    idle_timeout: float = 15.0
    max_connections: int = 256


LIMITS_KEY = web.AppKey("connection_limits", ConnectionLimits)


class _Guarded(asyncio.Protocol):
    """Wraps one aiohttp RequestHandler; forwards everything once the connection is admitted."""

    def __init__(self, factory: "_GuardedFactory"):
        self._factory = factory
        self._inner: Any = None  # aiohttp's RequestHandler, made only for an admitted connection
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._admitted = False
        self._tail = b""  # the last bytes seen, so a blank line split across reads is still found

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        limits = self._factory.limits
        if self._factory.open >= limits.max_connections:
            transport.write(TOO_MANY)  # type: ignore[attr-defined]
            transport.close()
            return
        self._admitted = True
        self._factory.open += 1
        self._inner = self._factory.server()
        self._timer = asyncio.get_running_loop().call_later(limits.header_timeout, self._too_slow)
        self._inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(TOO_SLOW)
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._timer is not None:
            seen = self._tail + data
            if END_OF_HEADERS in seen:
                self._timer.cancel()
                self._timer = None
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._factory.open -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inner.connection_lost(exc)


class _GuardedFactory:
    """The protocol factory handed to asyncio: aiohttp's Server, each protocol wrapped."""

    def __init__(self, server: web.Server, limits: ConnectionLimits):
        self.server = server
        self.limits = limits
        self.open = 0

    def __call__(self) -> _Guarded:
        return _Guarded(self)

    def __getattr__(self, name: str) -> Any:  # the rest of the Server interface, for the sites
        return getattr(self.server, name)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose sites accept connections through the guard."""

    def __init__(self, app: web.Application, **kwargs: Any):
        self.limits = app.get(LIMITS_KEY) or ConnectionLimits()
        # aiohttp's own keep-alive timer bounds the wait for every request after the first.
        kwargs.setdefault("keepalive_timeout", self.limits.idle_timeout)
        # After an answer that left the body unread (408, 413), aiohttp drains the rest for 10 s by
        # default: a slow client would keep its connection that long. The header timeout bounds it too.
        kwargs.setdefault("lingering_time", self.limits.header_timeout)
        super().__init__(app, **kwargs)
        self._factory: _GuardedFactory | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        self._factory = _GuardedFactory(server, self.limits)
        return server

    @property
    def server(self) -> Any:
        return self._factory if self._server is not None else None

    @property
    def open_connections(self) -> int:
        return self._factory.open if self._factory else 0
