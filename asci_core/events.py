"""In-process events between the components of one `asci serve`.

A component that reacts to another's event subscribes here instead of importing the other
component's internals: the list lives on the application, whoever registers first creates it.
"""
from __future__ import annotations

from typing import Any, Callable

from aiohttp import web

# listener(build, image, digest): an image was built, pushed and verified (autobuild → services).
BuildSucceeded = Callable[[Any, str, str], None]
BUILD_SUCCEEDED = web.AppKey("build_succeeded_listeners", list)


def build_succeeded_listeners(app: web.Application) -> list[BuildSucceeded]:
    """The application's listeners of BUILD_SUCCEEDED; call while routes are being added."""
    if BUILD_SUCCEEDED not in app:
        app[BUILD_SUCCEEDED] = []
    return app[BUILD_SUCCEEDED]
