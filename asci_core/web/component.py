"""The web page's entry in asci_core.components: the `web` settings and the routes of `asci serve`."""
from __future__ import annotations

from typing import Any

from asci_core.components import Component
from asci_core.web.settings import WebSettings


def _routes(app: Any, config: Any) -> None:
    from asci_core.web.app import install_from_config
    install_from_config(app, config)


COMPONENT = Component(name="web", settings={"web": WebSettings}, routes=_routes)
