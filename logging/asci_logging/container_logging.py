"""How every container ASCI starts logs: Docker's journald driver, tagged and labelled.

Components call `log_config()` when they create a container and pass both halves
to the Docker SDK:

    logging = log_config("autobuild", name, user=user)
    client.containers.run(image, ..., name=name, log_config=logging.log_config,
                          labels={**other_labels, **logging.labels})

The journald driver copies only the labels named in its `labels` option into the
journal (as ASCI_COMPONENT, ASCI_USER, ASCI_ENVIRONMENT); the shipper selects and
routes on those fields, so the option always lists all three keys even when a
container has no user or environment.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

COMPONENT_LABEL = "asci.component"
USER_LABEL = "asci.user"
ENVIRONMENT_LABEL = "asci.environment"
LOGGED_LABELS = (COMPONENT_LABEL, USER_LABEL, ENVIRONMENT_LABEL)

# The journal field names the driver derives from the label keys.
COMPONENT_FIELD = "ASCI_COMPONENT"
USER_FIELD = "ASCI_USER"
ENVIRONMENT_FIELD = "ASCI_ENVIRONMENT"

_COMPONENT = re.compile(r"[a-z][a-z0-9_]*")
# Docker's own rule for container names.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


@dataclass(frozen=True)
class ContainerLogging:
    """The Docker SDK's `log_config` argument and the labels the container must carry."""

    log_config: dict[str, object]
    labels: dict[str, str] = field(default_factory=dict)


def tag_for(component: str, name: str) -> str:
    return f"asci/{component}/{name}"


def log_config(component: str, name: str, user: str | None = None,
               environment: str | None = None) -> ContainerLogging:
    """Logging options for a container of COMPONENT named NAME (its Docker name)."""
    if not _COMPONENT.fullmatch(component):
        raise ValueError(f"component must be a lower-case word such as asci_core, got {component!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a Docker container name: {name!r}")
    labels = {COMPONENT_LABEL: component}
    for key, value in ((USER_LABEL, user), (ENVIRONMENT_LABEL, environment)):
        if value is not None:
            if not value or "\n" in value:
                raise ValueError(f"{key} must be a non-empty single line, got {value!r}")
            labels[key] = value
    config = {
        "Type": "journald",
        "Config": {"tag": tag_for(component, name), "labels": ",".join(LOGGED_LABELS)},
    }
    return ContainerLogging(log_config=config, labels=labels)
