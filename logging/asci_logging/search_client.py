"""Where log documents go: the Elasticsearch-API endpoint and its credentials.

`logging.url` wins; otherwise the logs share `stack.search` with the rest of ASCI.
Everything here speaks plain REST through one keep-alive `requests.Session`.
"""
from __future__ import annotations

from dataclasses import dataclass

import requests

from asci_core.config import Config
from asci_core.config_base import Secret


@dataclass(frozen=True)
class EngineAccess:
    url: str
    username: str | None = None
    password: Secret | None = None

    @classmethod
    def from_config(cls, config: Config) -> "EngineAccess":
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


class EngineError(Exception):
    """The search engine refused a request in a way retrying will not fix."""
