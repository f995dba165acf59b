"""Slack notices for builds, as Block Kit messages through an incoming webhook (slack-sdk).

A notice never holds up a build: it is sent from its own task, retried a few
times by slack-sdk's retry handlers, and a final failure is only logged.
"""
from __future__ import annotations

import asyncio
from typing import Any

from slack_sdk.http_retry.builtin_async_handlers import (AsyncConnectionErrorRetryHandler,
                                                         AsyncRateLimitErrorRetryHandler,
                                                         AsyncServerErrorRetryHandler)
from slack_sdk.webhook.async_client import AsyncWebhookClient

from asci_core.config_base import Secret
from asci_core.jsonlog import get_logger
from autobuild.store import Build

log = get_logger("autobuild")
MAX_LOG_CHARS = 2500  # a section's text is capped at 3,000 characters by Slack


class SlackNotifier:
    def __init__(self, webhook_url: Secret | None, *, notify_success: bool, public_url: str,
                 retries: int = 3, timeout: int = 5):
        self.enabled = webhook_url is not None
        self.notify_success = notify_success
        self.public_url = public_url.rstrip("/")
        self._tasks: set[asyncio.Task] = set()
        self._client = None
        if webhook_url is not None:
            self._client = AsyncWebhookClient(
                webhook_url.reveal(), timeout=timeout,
                retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=retries),
                                AsyncServerErrorRetryHandler(max_retry_count=retries),
                                AsyncRateLimitErrorRetryHandler(max_retry_count=retries)])

    def build_failed(self, build: Build, stage: str, error: str, log_tail: list[str]) -> None:
        tail = "\n".join(log_tail)[-MAX_LOG_CHARS:].replace("```", "'''")
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": f"Build failed: {build.repository} {build.tag}"[:150]}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*Repository*\n{build.repository}"},
                {"type": "mrkdwn", "text": f"*Tag*\n`{build.tag}`"},
                {"type": "mrkdwn", "text": f"*Failed stage*\n{stage}"},
                {"type": "mrkdwn", "text": f"*Attempts*\n{build.attempts}"},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n{error[:1000]}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Last lines of the log*\n```{tail or '(empty)'}```"}},
            {"type": "context", "elements": [{"type": "mrkdwn",
                                              "text": f"<{self.log_url(build)}|Full build log> · build {build.id}"}]},
        ]
        self._send(f"Build failed: {build.repository} {build.tag} ({stage}): {error[:200]}", blocks)

    def build_succeeded(self, build: Build, digest: str, image: str) -> None:
        if not self.notify_success:
            return
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": f":white_check_mark: *{build.repository}* `{build.tag}` built and pushed"}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*Image*\n`{image}:{build.tag}`"},
                {"type": "mrkdwn", "text": f"*Digest*\n`{digest}`"},
            ]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{self.log_url(build)}|Build log> · build {build.id}"}]},
        ]
        self._send(f"Built {build.repository} {build.tag}: {image}:{build.tag}@{digest}", blocks)

    def tag_moved(self, repository: str, change: dict[str, Any]) -> None:
        """A released tag was moved to another commit and refused; sent once per delivery."""
        tag = change["tag"]
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": f"Release tag moved: {repository} {tag}"[:150]}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*Repository*\n{repository}"},
                {"type": "mrkdwn", "text": f"*Tag*\n`{tag}`"},
                {"type": "mrkdwn", "text": f"*Released from*\n`{change['released_commit']}`"},
                {"type": "mrkdwn", "text": f"*Now at*\n`{change['commit']}`"},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": (
                "Releases are immutable: the image stays as built by "
                f"<{self.public_url}/builds/{change['released_build']}|build {change['released_build']}>, "
                "the moved tag is not built. Release a new version instead.")}},
        ]
        self._send(f"Release tag moved and refused: {repository} {tag} "
                   f"({change['released_commit'][:12]} -> {change['commit'][:12]})", blocks)

    def log_url(self, build: Build) -> str:
        return f"{self.public_url}/builds/{build.id}/log"

    def _send(self, text: str, blocks: list[dict[str, Any]]) -> None:
        if self._client is None:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(text, blocks))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, text: str, blocks: list[dict[str, Any]]) -> None:
        try:
            response = await self._client.send(text=text, blocks=blocks)
            if response.status_code != 200:
                log.warning("slack notice refused", status=response.status_code, body=response.body[:200])
        except Exception as exc:  # Slack being away must never reach the build
            log.warning("slack notice not delivered", error=f"{type(exc).__name__}: {exc}")

    async def drain(self, timeout: float = 10.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
