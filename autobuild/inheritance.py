"""Which configured image is built FROM which, read from the Dockerfiles themselves.

The legacy builder has no way to report a build's base images, so FROM lines are
parsed here: line continuations, `ARG` defaults before the first FROM, build-arg
overrides, `--platform=` flags and references to earlier stages are handled.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from asci_core.image_reference import name_and_tag

_ARG_REF = re.compile(r"\$(?:\{(\w+)(?::?-([^}]*))?\}|(\w+))")


@dataclass(frozen=True)
class FromLine:
    raw: str  # as written, e.g. "registry:5000/bl/base:${BASE_TAG}"
    image: str  # resolved reference
    tag_arg: str | None  # the ARG that supplies the tag, if any


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current.strip():
        lines.append(current)
    return lines


def _substitute(text: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(3)
        if name in values:
            return values[name]
        return m.group(2) or ""

    return _ARG_REF.sub(repl, text)


def parse_from_lines(dockerfile: str, build_args: dict[str, str] | None = None) -> list[FromLine]:
    """Every external base image of DOCKERFILE (stage names excluded), in order."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    found: list[FromLine] = []
    seen_from = False
    for line in _logical_lines(dockerfile):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not seen_from:
            # Only ARGs before the first FROM are in scope for FROM lines.
            name, eq, default = rest.strip().partition("=")
            args[name.strip()] = (build_args or {}).get(name.strip(), default.strip().strip('"') if eq else "")
        elif keyword == "FROM":
            seen_from = True
            words = [w for w in rest.split() if not w.startswith("--")]
            if not words:
                continue
            raw = words[0]
            image = _substitute(raw, args)
            earlier_stage = image.lower() in stages
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
            if earlier_stage or image == "scratch":
                continue
            tag_arg = None
            tag_part = raw.rsplit("/", 1)[-1]
            if ":" in tag_part:
                m = _ARG_REF.search(tag_part.split(":", 1)[1])
                tag_arg = (m.group(1) or m.group(3)) if m else None
            found.append(FromLine(raw, image, tag_arg))
    return found


def split_reference(ref: str) -> tuple[str, str]:
    """("registry:5000/bl/base", "v1") from "registry:5000/bl/base:v1"; a missing tag is "latest"."""
    return name_and_tag(ref)


@dataclass
class Graph:
    """Parent → children among configured repositories, with cycles found rather than followed."""

    children: dict[str, list[str]] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)
    cycles: list[list[str]] = field(default_factory=list)

    @classmethod
    def build(cls, image_of: dict[str, str], bases_of: dict[str, list[str]]) -> "Graph":
        """IMAGE_OF: repository → its image name; BASES_OF: repository → FROM references."""
        by_image = {image: repo for repo, image in image_of.items()}
        graph = cls({r: [] for r in image_of}, {r: [] for r in image_of})
        for repo, bases in bases_of.items():
            for base in bases:
                parent = by_image.get(split_reference(base)[0])
                if parent is not None and repo not in graph.children[parent]:
                    graph.children[parent].append(repo)
                    graph.parents[repo].append(parent)
        graph.cycles = graph._find_cycles()
        return graph

    def _find_cycles(self) -> list[list[str]]:
        cycles: list[list[str]] = []
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        path: list[str] = []

        def visit(node: str) -> None:
            state[node] = 1
            path.append(node)
            for child in sorted(self.children.get(node, [])):
                if state.get(child) == 1:
                    cycles.append(path[path.index(child):] + [child])
                elif child not in state:
                    visit(child)
            path.pop()
            state[node] = 2

        for node in sorted(self.children):
            if node not in state:
                visit(node)
        return cycles

    def in_cycle(self) -> set[str]:
        return {node for cycle in self.cycles for node in cycle}

    def descendants_in_order(self, root: str) -> list[str]:
        """Everything built (transitively) FROM ROOT, each once, parents before children.

        Repositories on a cycle are left out: there is no order in which to build them.
        """
        blocked = self.in_cycle()
        reachable: set[str] = set()
        stack = [root]
        while stack:
            node = stack.pop()
            for child in self.children.get(node, []):
                if child not in reachable and child not in blocked and child != root:
                    reachable.add(child)
                    stack.append(child)
        order: list[str] = []
        placed = {root}
        pending = sorted(reachable)
        while pending:
            ready = [n for n in pending if all(p in placed or p not in reachable for p in self.parents[n])]
            if not ready:
                break
            for n in ready:
                order.append(n)
                placed.add(n)
            pending = [n for n in pending if n not in placed]
        return order

    def render(self) -> str:
        lines = []
        roots = sorted(r for r, ps in self.parents.items() if not ps)

        def walk(node: str, depth: int, seen: frozenset[str]) -> None:
            lines.append(f"{'  ' * depth}{node}")
            for child in sorted(self.children.get(node, [])):
                if child in seen:
                    lines.append(f"{'  ' * (depth + 1)}{child}  (cycle)")
                else:
                    walk(child, depth + 1, seen | {child})

        for root in roots:
            walk(root, 0, frozenset({root}))
        for cycle in self.cycles:
            lines.append(f"CYCLE: {' -> '.join(cycle)} (these are not rebuilt automatically)")
        return "\n".join(lines)
