"""Where log documents go: the search engine's Elasticsearch-API endpoint, its credentials, and its state.

`logging.url` wins; otherwise the logs share `stack.search` with the rest of ASCI.
Everything here speaks plain REST through keep-alive `requests.Session`s.
("Search" throughout, never "engine": in ASCI the engine is Docker.)
"""
from __future__ import annotations

from dataclasses import dataclass

import requests

from asci_core.config import Config
from asci_core.config_base import Secret
from asci_core.errors import AsciError
from asci_core.stack.search_engine import Readiness, readiness


@dataclass(frozen=True)
class SearchAccess:
    url: str
    username: str | None = None
    password: Secret | None = None

    @classmethod
    def from_config(cls, config: Config) -> "SearchAccess":
        logging = config.logging
        if logging.url:
            return cls(logging.url.rstrip("/"), logging.username, logging.password)
        search = config.stack.search
        return cls(search.url.rstrip("/"), logging.username or search.username,
                   logging.password or search.password)

    def session(self) -> requests.Session:
        session = requests.Session()
        if self.username and self.password:
            session.auth = (self.username, self.password.reveal())
        session.headers["Accept"] = "application/json"
        return session


class SearchEngineError(AsciError):
    """The search engine refused a request in a way retrying will not fix."""


class SearchClient:
    """The few read-only questions the shipper asks the search engine besides `_bulk`."""

    def __init__(self, url: str, session: requests.Session, timeout: float = 5.0):
        self._url = url.rstrip("/")
        self._session = session
        self._timeout = timeout

    def _get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, object]:
        resp = self._session.get(f"{self._url}{path}", params=params, timeout=self._timeout)
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, None

    def readiness(self) -> Readiness:
        """Whether the engine is usable and whether its cluster state is recovered."""
        return readiness(self._get)
