"""The `autobuild:` section of the configuration."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from asci_core.config_base import Secret, setting


@dataclass(frozen=True)
class BitbucketHostSettings:
    name: str = setting(help="short name that repositories refer to, e.g. bitbucket", check="word")
    kind: Literal["server", "cloud"] = setting(help="Bitbucket Server/Data Center or Bitbucket Cloud")
    url: str = setting(help="web address of the host; payloads naming another host are refused", check="url")
    clone_url: str = setting(
        help="clone URL template with {project}, {slug} (and {username}/{password} when git credentials are set), "
             "e.g. https://{username}:{password}@bitbucket.site/scm/{project}/{slug}.git or file:///srv/git/{project}/{slug}.git")
    username: str | None = setting(None, help="git user for cloning")
    password: Secret | None = setting(None, help="git password or access token for cloning")


@dataclass(frozen=True)
class ImageFileSettings:
    image: str = setting(help="image folder under images/, e.g. desktop-gpu", check="word")
    name: str = setting(help="the file's name in that image's build context, as its context-files lists it, "
                             "e.g. virtualgl-package", check="word")
    path: Path = setting(help="the file on this host (relative: to the configuration file), e.g. the site's "
                              "VirtualGL .deb or source tarball")


@dataclass(frozen=True)
class RepositorySettings:
    name: str = setting(help="Bitbucket PROJECT/slug (Server) or workspace/slug (Cloud), e.g. BL/desktop-base", check="repo")
    webhook_secret: Secret = setting(help="HMAC secret of the repository's webhook")
    host: str = setting("bitbucket", help="which autobuild.hosts entry this repository lives on", check="word")
    image: str | None = setting(None, help="target repository in the registry, default: lower-cased PROJECT/slug",
                                check="image")
    dockerfile: str = setting("Dockerfile", help="Dockerfile path inside the repository", check="relpath")
    context: str = setting(".", help="build context inside the repository", check="relpath")
    build_args: dict[str, str] = setting(default_factory=dict, help="docker build arguments")
    tag_pattern: str = setting(r"^v?\d+\.\d+\.\d+$", help="tags that get built (default: semantic versions)",
                               check="regex")
    move_latest: bool = setting(False, help="also point `latest` at the highest version")
    immutable_tags: bool = setting(
        True, help="a released tag keeps its image: a tag moved to another commit is refused (one Slack message), "
                   "a retry of a succeeded build needs force, and a tag the registry already holds as another image "
                   "is never pushed again (rebuilds for a new parent version excepted)")


@dataclass(frozen=True)
class AutobuildSettings:
    workdir: Path | None = setting(None, help="clones, build logs and the job database (default: STATE_DIR/autobuild)")
    max_body_bytes: int = setting(1024 * 1024, help="largest webhook body accepted", check="positive")
    concurrency: int = setting(default_factory=lambda: os.cpu_count() or 1, help="builds at once", check="positive")
    paused: bool = setting(False, help="accept and queue webhooks but start no builds (e.g. during registry maintenance)")
    max_attempts: int = setting(5, help="tries of a build that fails for a transient reason", check="positive")
    retry_base_seconds: float = setting(2.0, help="first retry delay; doubles each attempt", check="positive")
    retry_max_seconds: float = setting(120.0, help="longest retry delay", check="positive")
    body_timeout_seconds: float = setting(
        30.0, help="a webhook body must arrive whole within this time, or the request is answered 408", check="positive")
    public_url: str | None = setting(None, help="base URL for links in Slack, default http://server.host:server.port",
                                     check="url")
    hosts: list[BitbucketHostSettings] = setting(default_factory=list, help="Bitbucket hosts that send webhooks")
    repositories: list[RepositorySettings] = setting(default_factory=list, help="repositories that build images")
    image_files: list[ImageFileSettings] = setting(
        default_factory=list, help="files `asci images build` adds to an image's build context from this host "
                                   "(e.g. desktop-gpu's virtualgl-package)")

    def context_files(self) -> dict[str, dict[str, Path]]:
        """image folder -> {name in its build context: file on this host}, for autobuild.images.Family."""
        found: dict[str, dict[str, Path]] = {}
        for entry in self.image_files:
            found.setdefault(entry.image, {})[entry.name] = entry.path
        return found

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        hosts = [h.name for h in self.hosts]
        for i, host in enumerate(self.hosts):
            if hosts.index(host.name) != i:
                found.append((f"hosts[{i}].name", f"host {host.name!r} is defined twice"))
        seen: set[str] = set()
        for i, repo in enumerate(self.repositories):
            if repo.host not in hosts:
                known = ", ".join(hosts) or "none defined"
                found.append((f"repositories[{i}].host", f"no host named {repo.host!r} in autobuild.hosts ({known})"))
            if repo.name.lower() in seen:
                found.append((f"repositories[{i}].name", f"repository {repo.name!r} is configured twice"))
            seen.add(repo.name.lower())
        files: set[tuple[str, str]] = set()
        for i, entry in enumerate(self.image_files):
            if (entry.image, entry.name) in files:
                found.append((f"image_files[{i}]", f"{entry.image}'s {entry.name} is configured twice"))
            files.add((entry.image, entry.name))
        return found
