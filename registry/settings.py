"""The `registry:` section: who may do what, what is kept, and TLS.

How the service runs (managed or not, host, port, a site URL) stays in
`stack.registry`; this section is about the registry as a product component.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from asci_core.config_base import setting


@dataclass(frozen=True)
class RegistryAuthSettings:
    # 0 means "any free port, chosen at each start": clients learn the token endpoint
    # from the registry's own challenge, so nobody has to know it.
    token_port: int = setting(0, help="port of the registry's token service (0: a free port chosen at start)",
                              check=("range", 0, 65535))
    token_realm: str | None = setting(None, help="public URL of the token endpoint when clients reach the "
                                      "registry by another name (default: http(s)://HOST:TOKEN_PORT/token)",
                                      check="url")
    # The registry honours a token 60 s past its `exp`; the token service subtracts that, so this
    # is the real lifetime, and it cannot be shorter than that leeway.
    token_ttl: int = setting(300, help="how long an access token is accepted by the registry, in seconds",
                             check=("range", 60, 3600))
    service: str = setting("asci-registry", help="service name (token audience) the registry expects", check="word")
    issuer: str = setting("asci-registry-token", help="issuer name the registry trusts", check="word")


@dataclass(frozen=True)
class RegistryTlsSettings:
    certificate: Path | None = setting(None, help="PEM certificate (chain) the registry and token service serve")
    key: Path | None = setting(None, help="PEM private key of that certificate")
    ca_bundle: Path | None = setting(None, help="CA bundle ASCI's own clients use to verify the registry "
                                     "(default: the system store)")

    @property
    def enabled(self) -> bool:
        return self.certificate is not None


@dataclass(frozen=True)
class RetentionPolicy:
    repository: str = setting(help="repository name or glob (e.g. facility/*); the first matching policy applies")
    keep_last: int = setting(10, help="keep the newest N release versions (semantic-version order)",
                             check=("range", 0, 100000))
    keep_last_prereleases: int = setting(0, help="also keep the newest N pre-release versions (e.g. v2.0.0-rc.1)",
                                         check=("range", 0, 100000))
    keep_tags: list[str] = setting(default_factory=lambda: ["latest"],
                                   help="regular expressions; a tag matching one in full is kept", check="regex")
    keep_days: float | None = setting(None, help="keep any image built fewer than D days ago (image creation time)",
                                      check=("range", 0, 36500))

    def matches(self, repository: str) -> bool:
        return fnmatch.fnmatchcase(repository, self.repository)


@dataclass(frozen=True)
class RegistryComponentSettings:
    auth: RegistryAuthSettings = field(default_factory=RegistryAuthSettings)
    tls: RegistryTlsSettings = field(default_factory=RegistryTlsSettings)
    retention: list[RetentionPolicy] = setting(default_factory=list,
                                               help="retention policies; repositories matching none are never touched")
    deployed: list[str] = setting(default_factory=list,
                                  help="image references (repo:tag or repo@digest) always kept, besides what runs")
    deployed_label: str = setting("asci.component", help="label marking ASCI's running containers; their images are kept")
    gc_timeout: float = setting(1800.0, help="seconds garbage collection may take", check="positive")

    def problems(self) -> list[tuple[str, str]]:
        """Mistakes no single setting shows; asci_core.config reports them at load time."""
        from registry.errors import InvalidReference
        from registry.reference import parse_reference

        found: list[tuple[str, str]] = []
        if (self.tls.certificate is None) != (self.tls.key is None):
            found.append(("tls", "certificate and key must be given together"))
        for i, text in enumerate(self.deployed):
            try:
                parse_reference(text)
            except InvalidReference as exc:
                found.append((f"deployed[{i}]", exc.message))
        patterns = [p.repository for p in self.retention]
        for i, pattern in enumerate(patterns):
            if not pattern or pattern.startswith("/") or any(c.isspace() or c.isupper() for c in pattern):
                found.append((f"retention[{i}].repository", f"expected a repository name or glob such as "
                              f"facility/*, got {pattern!r}"))
            elif patterns.index(pattern) != i:
                found.append((f"retention[{i}].repository", f"{pattern!r} already has a policy above"))
        return found

    def policy_for(self, repository: str) -> RetentionPolicy | None:
        return next((p for p in self.retention if p.matches(repository)), None)
