"""The `logging:` section of the configuration.

It configures the log path journald → shipper → search engine: where documents go, which journal entries
are read, and which ingest pipeline parses each source.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from asci_core.config_base import Secret, setting

# Journal matches that select ASCI's containers and units. Each inner list is one
# group: terms on different fields must all hold, terms on the same field are
# alternatives; the groups themselves are alternatives (journalctl's `+`).
DEFAULT_SELECT: list[list[str]] = [
    ["ASCI_COMPONENT=autobuild", "ASCI_COMPONENT=asci_core", "ASCI_COMPONENT=registry",
     "ASCI_COMPONENT=session", "ASCI_COMPONENT=proxy", "ASCI_COMPONENT=alerts"],
    ["SYSLOG_IDENTIFIER=asci"],
    ["SYSLOG_IDENTIFIER=docker-registry"],
]


@dataclass(frozen=True)
class RouteSettings:
    pipeline: str = setting(help="source pipeline to use, e.g. registry (installed as <prefix>-registry)",
                            check="word")
    component: str | None = setting(None, help="match: the container's asci.component label, exactly")
    container_name: str | None = setting(None, help="match: regular expression searched in the container name",
                                         check="regex")
    identifier: str | None = setting(None, help="match: regular expression searched in SYSLOG_IDENTIFIER",
                                     check="regex")
    dataset: str | None = setting(None, help="event.dataset and index name part (default: the pipeline name)",
                                  check="word")


def _default_routes() -> list[RouteSettings]:
    return [
        RouteSettings(pipeline="autobuild", component="autobuild"),
        RouteSettings(pipeline="asci-core", component="asci_core"),
        RouteSettings(pipeline="registry", component="registry"),
        RouteSettings(pipeline="session", component="session"),
        RouteSettings(pipeline="access", component="proxy"),
        RouteSettings(pipeline="asci-core", component="alerts", dataset="alerts"),
        RouteSettings(pipeline="registry", identifier=r"^docker-registry$"),
        RouteSettings(pipeline="asci-core", identifier=r"^asci$"),
    ]


@dataclass(frozen=True)
class ShipperSettings:
    select: list[list[str]] = setting(default_factory=lambda: [list(g) for g in DEFAULT_SELECT],
                                      help="journal matches, groups of FIELD=VALUE terms (see logging/README.md)")
    routes: list[RouteSettings] = setting(default_factory=_default_routes,
                                          help="first matching route picks the pipeline; else default_pipeline")
    default_pipeline: str = setting("default", help="pipeline for entries no route matches", check="word")
    start_at: Literal["head", "tail"] = setting("head", help="where to begin when there is no saved cursor")
    cursor_file: Path | None = setting(None, help="saved journal position (default: STATE_DIR/logging/shipper.cursor)")
    metrics_file: Path | None = setting(None, help="metrics snapshot (default: STATE_DIR/logging/shipper-metrics.json)")
    journal_directory: Path | None = setting(None, help="read journal files from this folder instead of the system journal")
    batch_size: int = setting(2000, help="most events in one _bulk request", check=("range", 1, 100000))
    batch_bytes: int = setting(8 * 1024 * 1024, help="largest _bulk body in bytes", check=("range", 65536, 100 * 1024 * 1024))
    flush_interval: float = setting(0.5, help="seconds before a partly filled batch is sent", check="positive")
    senders: int = setting(2, help="_bulk requests in flight at once (the engine runs each request's "
                                   "pipelines on one thread: 2 lets a 2-core node use both)", check=("range", 1, 16))
    batches_in_flight: int = setting(2, help="full batches queued for sending; reading pauses beyond this",
                                     check=("range", 1, 64))
    max_message_bytes: int = setting(128 * 1024, help="longer messages are truncated (flagged, with the original length)",
                                     check=("range", 1024, 16 * 1024 * 1024))
    partial_timeout: float = setting(10.0, help="seconds a split container line may wait for its last part",
                                     check="positive")
    retry_initial: float = setting(0.5, help="first back-off in seconds after a failed request", check="positive")
    retry_max: float = setting(30.0, help="longest back-off in seconds", check="positive")
    missing_pipeline_grace: float = setting(60.0, help="seconds documents wait for an ingest pipeline missing from a "
                                            "recovered cluster (install running) before becoming dead letters; while "
                                            "the cluster state is still recovering they wait without limit",
                                            check="positive")
    request_timeout: float = setting(60.0, help="seconds to wait for one _bulk answer", check="positive")
    compress: bool = setting(False, help="gzip _bulk bodies (worth it across a network, not on loopback)")
    metrics_interval: float = setting(10.0, help="seconds between metrics snapshots", check="positive")
    shutdown_timeout: float = setting(15.0, help="seconds to finish sending on SIGTERM before giving up",
                                      check="positive")


@dataclass(frozen=True)
class LoggingSettings:
    prefix: str = setting("asci-logs", help="indices <prefix>-<dataset>-YYYY.MM.DD, pipelines <prefix>-<source>",
                          check="word")
    url: str | None = setting(None, help="Elasticsearch-API endpoint for logs (default: stack.search.url)", check="url")
    username: str | None = setting(None, help="user for `url` (default: stack.search.username)")
    password: Secret | None = setting(None, help="password for `url` (default: stack.search.password)")
    retention_days: int = setting(30, help="days an index is kept by the ILM/ISM policy `install` writes",
                                  check=("range", 1, 3650))
    shipper: ShipperSettings = field(default_factory=ShipperSettings)
