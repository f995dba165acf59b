"""The page's static files under URLs that carry a digest of their content, cached for good.

A first visit in a fresh browser profile is what a newcomer does, and noVNC is ~40 ES modules
that a browser discovers level by level as it parses each one. So the viewer page names every
module up front and the browser asks for all of them at once (rel=modulepreload) instead of
import by import. (Fetching them earlier, rel=prefetch from the login or desktops page, was
measured and dropped: on a busy node those 40 requests slowed the login and the start more
than they saved, since the desktop's own start hides the viewer's load.)
Under /web/assets/DIGEST/ and /novnc/DIGEST/ a file never changes (another ASCI or noVNC
version is another digest), so those answers say `immutable` and a cached copy is used
without asking the server again.
The unversioned paths stay for anyone who links them; they are revalidated on every use.
"""
from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Static imports (`import x from "./y.js"`, `import "./y.js"`, `export ... from "./y.js"`); noVNC has no dynamic ones.
IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*['"](\.{1,2}/[^'"]+)['"]""")
MAX_MODULES = 500


def digest_of(root: Path) -> str:
    """12 hex digits over every file's path, size and modification time: a new version, a new digest."""
    sha = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        status = path.stat()
        sha.update(f"{path.relative_to(root)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return sha.hexdigest()[:12]


def module_graph(root: Path, entry: str) -> list[str]:
    """ENTRY (a path under ROOT) and every module it imports, transitively, as paths under ROOT."""
    seen, queue = [entry], [entry]
    while queue and len(seen) < MAX_MODULES:
        module = queue.pop(0)
        try:
            text = (root / module).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for relative in IMPORT.findall(text):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(module), relative))
            if target.startswith("..") or target in seen or not (root / target).is_file():
                continue
            seen.append(target)
            queue.append(target)
    return seen


@dataclass(frozen=True)
class StaticUrls:
    static: str  # URL prefix of ASCI's own static files, ending in "/"
    novnc: str  # URL prefix of noVNC, ending in "/"
    viewer_modules: list[str] = field(default_factory=list)  # every module the viewer loads, as URLs

    @classmethod
    def build(cls, static_root: Path, novnc_root: Path | None) -> "StaticUrls":
        static = f"/web/assets/{digest_of(static_root)}/"
        modules = [static + "viewer.js", static + "common.js"]
        if novnc_root is None:
            return cls(static, "/novnc/", modules)
        novnc = f"/novnc/{digest_of(novnc_root)}/"
        modules += [novnc + path for path in module_graph(novnc_root, "core/rfb.js")]
        return cls(static, novnc, modules)
