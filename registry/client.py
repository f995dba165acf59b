"""A client for the Distribution (Docker Registry v2 / OCI distribution) HTTP API.

The docker SDK pushes and pulls through the engine but cannot list, inspect,
delete or copy inside a registry; this module does that over `requests`.

Authentication follows the registry's own challenge: `Basic` (htpasswd) is
answered with the user's password, `Bearer` (token auth) by asking the realm for
a token carrying exactly the scopes a call needs. So the same client talks to
ASCI's managed registry, an older htpasswd-only one, or a site's registry.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import urljoin

import requests

from registry.errors import (Denied, InvalidReference, NotFound, RegistryError, RegistryUnavailable,
                             Unauthorized, error_from_response)
from registry.reference import Reference, check_digest, check_repository, check_tag, parse_reference

__all__ = [
    "Denied", "InvalidReference", "Manifest", "NotFound", "RegistryClient", "RegistryError",
    "RegistryUnavailable", "Unauthorized", "MANIFEST_TYPES",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
# Without these the registry falls back to schema1, whose digest differs from what was pushed.
MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)
ACCEPT = ", ".join(MANIFEST_TYPES)


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as stored: the raw bytes matter, since their sha256 is the digest."""

    repository: str
    digest: str
    media_type: str
    body: bytes = field(repr=False)

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or "manifests" in self.data

    def children(self) -> list[str]:
        """Digests of the per-platform manifests of a manifest list / OCI index."""
        return [m["digest"] for m in self.data.get("manifests", [])] if self.is_index else []

    def blobs(self) -> list[str]:
        """Config and layer digests of an image manifest (empty for an index)."""
        if self.is_index:
            return []
        data = self.data
        found = [data["config"]["digest"]] if "config" in data else []
        return found + [layer["digest"] for layer in data.get("layers", [])]

    def size(self) -> int:
        data = self.data
        total = len(self.body)
        if "config" in data:
            total += int(data["config"].get("size", 0))
        return total + sum(int(layer.get("size", 0)) for layer in data.get("layers", []))


@dataclass
class _Token:
    value: str
    expires: float


_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_RE.findall(rest))


def _scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


CATALOG_SCOPE = "registry:catalog:*"


class RegistryClient:
    """One registry, one user. Thread-safe enough for concurrent reads (tokens are cached per scope set)."""

    def __init__(self, access: Any, *, timeout: float = 30.0, page_size: int = 100,
                 session: requests.Session | None = None, verify: bool | str | None = None):
        # `access` is a registry.service.RegistryAccess (duck-typed to keep this module import-light).
        self.url = access.url.rstrip("/")
        self.address = access.address
        self.username: str | None = access.username
        self._password = access.password
        self.timeout = timeout
        self.page_size = page_size
        self.session = session or requests.Session()
        # Passed per request: a session-level value loses to $REQUESTS_CA_BUNDLE in requests.
        self.verify: bool | str = getattr(access, "verify", True) if verify is None else verify
        self._scheme: str | None = None  # learnt from the first challenge
        self._challenge: dict[str, str] = {}
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._lock = threading.Lock()

    # --- plumbing ----------------------------------------------------------

    def _basic(self) -> tuple[str, str] | None:
        if self.username is None or self._password is None:
            return None
        return self.username, self._password.reveal()

    def _fetch_token(self, scopes: tuple[str, ...]) -> _Token:
        realm = self._challenge.get("realm")
        if not realm:
            raise RegistryError("the registry asked for a token but named no realm")
        params: list[tuple[str, str]] = []
        if self._challenge.get("service"):
            params.append(("service", self._challenge["service"]))
        params += [("scope", s) for s in scopes]
        if self.username:
            params.append(("account", self.username))
        try:
            resp = self.session.get(realm, params=params, auth=self._basic(), timeout=self.timeout,
                                    verify=self.verify)
        except requests.RequestException as exc:
            raise RegistryUnavailable(f"token service {realm} does not answer ({type(exc).__name__})") from None
        if resp.status_code == 401:
            who = f"user {self.username!r}" if self.username else "anonymous access"
            raise Unauthorized(f"{who} rejected by the registry's token service (wrong or missing password)",
                               code="UNAUTHORIZED", status=401)
        if resp.status_code != 200:
            raise error_from_response(resp, "token request")
        body = resp.json()
        value = body.get("token") or body.get("access_token")
        if not value:
            raise RegistryError("token service answered without a token")
        lifetime = float(body.get("expires_in") or 60)
        # Renew a little early so a token never expires between check and use.
        return _Token(value, time.monotonic() + max(lifetime - 10, lifetime / 2))

    def _auth_header(self, scopes: tuple[str, ...]) -> dict[str, str]:
        if self._scheme != "bearer":
            return {}
        key = tuple(sorted(set(scopes)))
        with self._lock:
            token = self._tokens.get(key)
        if token is None or token.expires <= time.monotonic():
            token = self._fetch_token(key)
            with self._lock:
                self._tokens[key] = token
        return {"Authorization": f"Bearer {token.value}"}

    def _learn(self, resp: requests.Response, scopes: tuple[str, ...], sent_basic: bool) -> tuple[str, ...] | None:
        """From a 401, decide whether a retry can succeed; returns the scopes to retry with."""
        scheme, params = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            # Judge by what this request sent: another thread may have learnt "basic" meanwhile.
            if sent_basic or self._basic() is None:
                return None
            self._scheme = "basic"
            return scopes
        if scheme == "bearer":
            wanted = set(scopes) | set(filter(None, params.get("scope", "").split(" ")))
            key = tuple(sorted(wanted))
            if self._scheme == "bearer" and params.get("error") == "insufficient_scope" and key == tuple(sorted(set(scopes))):
                return None  # the token we sent already asked for this: the role does not grant it
            self._scheme = "bearer"
            self._challenge = {k: v for k, v in params.items() if k in ("realm", "service")}
            with self._lock:
                self._tokens.pop(key, None)
            return key
        return None

    def request(self, method: str, path: str, *, what: str, scopes: Iterable[str] = (),
                ok: tuple[int, ...] = (200,), headers: Mapping[str, str] | None = None,
                params: Any = None, data: Any = None, stream: bool = False) -> requests.Response:
        """One API call with auth; raises the matching RegistryError unless the status is in OK."""
        url = path if path.startswith(("http://", "https://")) else f"{self.url}{path}"
        wanted = tuple(scopes)
        for attempt in range(3):
            hdrs = dict(headers or {})
            hdrs.update(self._auth_header(wanted))
            auth = self._basic() if self._scheme == "basic" else None
            try:
                resp = self.session.request(method, url, headers=hdrs, params=params, data=data, auth=auth,
                                            timeout=self.timeout, stream=stream, allow_redirects=True,
                                            verify=self.verify)
            except requests.RequestException as exc:
                raise RegistryUnavailable(f"{what}: registry {self.url} does not answer ({type(exc).__name__})") from None
            if resp.status_code != 401 or attempt == 2:
                break
            retry = self._learn(resp, wanted, sent_basic=auth is not None)
            if retry is None:
                break
            wanted = retry
        if resp.status_code in ok:
            return resp
        if method == "HEAD" and resp.status_code not in (401, 403):
            # A HEAD answer has no body, hence no error code: ask again with GET to learn it.
            again = self.request("GET", url, what=what, scopes=wanted, ok=ok + (200,), headers=headers,
                                 params=params, stream=True)
            again.close()
            raise error_from_response(resp, what)
        if resp.status_code == 401 and self._scheme == "bearer" and self._basic() is not None:
            # Our credentials were accepted (we hold a token) yet the registry refuses: a role limit.
            err = error_from_response(resp, what)
            raise Denied(f"{what}: user {self.username!r} is not allowed to do this "
                         f"(needs {', '.join(wanted) or 'access'})", code=err.code or "DENIED", status=401)
        if resp.status_code == 401 and self._scheme == "basic":
            raise Unauthorized(f"{what}: user {self.username!r} rejected by the registry (wrong or missing password)",
                               code="UNAUTHORIZED", status=401)
        if resp.status_code == 401 and self._basic() is None:
            raise Unauthorized(f"{what}: the registry requires credentials and none are configured",
                               code="UNAUTHORIZED", status=401)
        raise error_from_response(resp, what)

    def _paginate(self, path: str, key: str, what: str, scopes: tuple[str, ...],
                  page_size: int | None) -> Iterator[str]:
        params: dict[str, Any] | None = {"n": page_size or self.page_size}
        url = path
        seen_urls: set[str] = set()
        while True:
            resp = self.request("GET", url, what=what, scopes=scopes, params=params)
            yield from resp.json().get(key) or []
            nxt = resp.links.get("next", {}).get("url")
            if not nxt:
                return
            url = urljoin(f"{self.url}/", nxt)
            if url in seen_urls:  # a registry repeating its own Link would loop forever
                raise RegistryError(f"{what}: the registry returned the same next page twice ({nxt})")
            seen_urls.add(url)
            params = None  # the Link URL carries n and last itself

    # --- reading -----------------------------------------------------------

    def ping(self) -> None:
        """Raise unless the registry answers and accepts our credentials."""
        self.request("GET", "/v2/", what="registry check")

    def iter_catalog(self, page_size: int | None = None) -> Iterator[str]:
        return self._paginate("/v2/_catalog", "repositories", "catalog", (CATALOG_SCOPE,), page_size)

    def catalog(self, page_size: int | None = None) -> list[str]:
        return list(self.iter_catalog(page_size))

    def iter_tags(self, repository: str, page_size: int | None = None) -> Iterator[str]:
        check_repository(repository)
        return self._paginate(f"/v2/{repository}/tags/list", "tags", f"tags of {repository}",
                              (_scope(repository, "pull"),), page_size)

    def tags(self, repository: str, page_size: int | None = None) -> list[str]:
        return list(self.iter_tags(repository, page_size))

    def _manifest_path(self, repository: str, reference: str) -> str:
        check_repository(repository)
        if ":" in reference:
            check_digest(reference)
        else:
            check_tag(reference)
        return f"/v2/{repository}/manifests/{reference}"

    def manifest_digest(self, repository: str, reference: str) -> str:
        """The content digest a pull of REPOSITORY:REFERENCE would verify (manifest lists included)."""
        return self.manifest_head(repository, reference)[0]

    def manifest_head(self, repository: str, reference: str) -> tuple[str, str]:
        """(digest, media type) of a manifest, without downloading it."""
        path = self._manifest_path(repository, reference)
        what = f"manifest {repository}:{reference}" if ":" not in reference else f"manifest {repository}@{reference}"
        resp = self.request("HEAD", path, what=what, scopes=(_scope(repository, "pull"),),
                            headers={"Accept": ACCEPT})
        digest = resp.headers.get("Docker-Content-Digest")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if digest and media_type in MANIFEST_TYPES:
            return digest, media_type
        manifest = self.get_manifest(repository, reference)
        return manifest.digest, manifest.media_type

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        path = self._manifest_path(repository, reference)
        resp = self.request("GET", path, what=f"manifest {repository}:{reference}",
                            scopes=(_scope(repository, "pull"),), headers={"Accept": ACCEPT})
        body = resp.content
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        digest = resp.headers.get("Docker-Content-Digest") or computed
        if digest != computed and digest.startswith("sha256:"):
            raise RegistryError(f"manifest {repository}:{reference}: body does not match its digest {digest}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            media_type = json.loads(body).get("mediaType") or media_type
        return Manifest(repository, digest, media_type, body)

    def get_blob(self, repository: str, digest: str) -> bytes:
        check_repository(repository)
        check_digest(digest)
        return self.request("GET", f"/v2/{repository}/blobs/{digest}", what=f"blob {digest} in {repository}",
                            scopes=(_scope(repository, "pull"),)).content

    def image_config(self, manifest: Manifest) -> dict[str, Any]:
        """The image configuration (created time, labels, ...) of an image manifest or of an index's first image."""
        if manifest.is_index:
            children = manifest.children()
            if not children:
                return {}
            manifest = self.get_manifest(manifest.repository, children[0])
        config = manifest.data.get("config", {}).get("digest")
        return json.loads(self.get_blob(manifest.repository, config)) if config else {}

    def blob_exists(self, repository: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", what=f"blob {digest} in {repository}",
                            scopes=(_scope(repository, "pull"),), ok=(200, 404))
        return resp.status_code == 200

    # --- writing -----------------------------------------------------------

    def put_manifest(self, repository: str, reference: str, manifest: Manifest,
                     extra_scopes: Iterable[str] = ()) -> str:
        path = self._manifest_path(repository, reference)
        resp = self.request("PUT", path, what=f"put manifest {repository}:{reference}",
                            scopes=(_scope(repository, "pull", "push"), *extra_scopes), ok=(201,),
                            headers={"Content-Type": manifest.media_type}, data=manifest.body)
        return resp.headers.get("Docker-Content-Digest") or manifest.digest

    def upload_blob(self, repository: str, data: bytes) -> str:
        """Upload DATA as one blob (monolithic); returns its digest. Already-present blobs are not sent again."""
        check_repository(repository)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.blob_exists(repository, digest):
            return digest
        scopes = (_scope(repository, "pull", "push"),)
        start = self.request("POST", f"/v2/{repository}/blobs/uploads/", what=f"upload to {repository}",
                             scopes=scopes, ok=(202,))
        location = urljoin(f"{self.url}/", start.headers["Location"])
        self.request("PUT", location, what=f"upload {digest} to {repository}", scopes=scopes, ok=(201,),
                     params={"digest": digest}, data=data, headers={"Content-Type": "application/octet-stream"})
        return digest

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete by digest: every tag pointing at DIGEST goes with it (the registry has no per-tag delete)."""
        path = self._manifest_path(repository, check_digest(digest))
        self.request("DELETE", path, what=f"delete {repository}@{digest}",
                     scopes=(_scope(repository, "delete"),), ok=(202,))

    def mount_blob(self, target: str, digest: str, source: str) -> bool:
        """Link an existing blob of SOURCE into TARGET without transferring it; False if the registry declined."""
        scopes = (_scope(target, "pull", "push"), _scope(source, "pull"))
        resp = self.request("POST", f"/v2/{target}/blobs/uploads/", what=f"mount {digest} from {source} into {target}",
                            scopes=scopes, params={"mount": digest, "from": source}, ok=(201, 202))
        if resp.status_code == 201:
            return True
        # 202: the registry opened an ordinary upload instead; abandon it.
        location = resp.headers.get("Location")
        if location:
            self.request("DELETE", urljoin(f"{self.url}/", location), what="cancel upload", scopes=scopes,
                         ok=(204, 404))
        return False

    def _copy_blob(self, target: str, digest: str, source: str) -> None:
        """Fallback when a mount is declined: stream the blob through this client (never through the engine)."""
        scopes = (_scope(target, "pull", "push"), _scope(source, "pull"))
        start = self.request("POST", f"/v2/{target}/blobs/uploads/", what=f"upload {digest} to {target}",
                             scopes=scopes, ok=(202,))
        blob = self.request("GET", f"/v2/{source}/blobs/{digest}", what=f"blob {digest} in {source}",
                            scopes=scopes, stream=True)
        location = urljoin(f"{self.url}/", start.headers["Location"])
        self.request("PUT", location, what=f"upload {digest} to {target}", scopes=scopes, ok=(201,),
                     params={"digest": digest}, data=blob.iter_content(1 << 20),
                     headers={"Content-Type": "application/octet-stream"})

    def _copy_image(self, manifest: Manifest, source: str, target: str) -> None:
        for digest in manifest.blobs():
            if self.blob_exists(target, digest):
                continue
            if not self.mount_blob(target, digest, source):
                self._copy_blob(target, digest, source)

    def copy(self, source: str, source_ref: str, target: str, target_tag: str) -> str:
        """Put SOURCE:SOURCE_REF under TARGET:TARGET_TAG inside the registry; returns the (unchanged) digest.

        The manifest bytes are re-put verbatim, so the digest is the same and every
        node that pulled the old name already has every layer.
        """
        check_tag(target_tag)
        check_repository(target)
        top = self.get_manifest(source, source_ref)
        extra = (_scope(source, "pull"),)
        if top.is_index:
            for child_digest in top.children():
                child = self.get_manifest(source, child_digest)
                self._copy_image(child, source, target)
                self.put_manifest(target, child.digest, child, extra)
        else:
            self._copy_image(top, source, target)
        digest = self.put_manifest(target, target_tag, top, extra)
        if digest != top.digest:
            raise RegistryError(f"promotion changed the digest ({top.digest} became {digest})")
        return digest

    def promote(self, source: str | Reference, target: str | Reference) -> str:
        """`promote("app-test:v1.2", "app:v1.2")`: a retag across repositories without pulling."""
        src = source if isinstance(source, Reference) else parse_reference(source, address=self.address)
        dst = target if isinstance(target, Reference) else parse_reference(target, default_tag=None,
                                                                           address=self.address)
        if dst.digest:
            raise InvalidReference(f"promotion target {dst} must be a tag, not a digest")
        return self.copy(src.repository, src.reference, dst.repository, dst.tag or src.tag or "latest")
