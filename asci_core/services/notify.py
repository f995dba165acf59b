"""The one Slack message a failed roll posts (slack-sdk's incoming webhook; Slack being away never stops a roll)."""
from __future__ import annotations

from asci_core.config_base import Secret
from asci_core.jsonlog import get_logger

log = get_logger("services")


def post_failed_roll(webhook_url: Secret | None, service: str, from_tag: str | None, to_tag: str, reason: str) -> None:
    if webhook_url is None:
        return
    from slack_sdk.webhook import WebhookClient

    kept = f"{from_tag} keeps serving" if from_tag else "nothing was running before"
    text = f":x: service {service}: {to_tag} was not rolled out ({reason}); {kept}. {to_tag} will not be tried again."
    try:
        response = WebhookClient(webhook_url.reveal(), timeout=10).send(text=text)
        if response.status_code != 200:
            log.warning("slack notice refused", status=response.status_code)
    except Exception as exc:  # noqa: BLE001 - a notice must never turn a handled failure into a crash
        log.warning("slack notice not delivered", error=type(exc).__name__)
