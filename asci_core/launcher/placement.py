"""Choosing a node for a session: filter, then score. Pure and deterministic.

Filter: the node answers, carries the labels the environment requires, and has
room for the CPUs, memory and GPUs after what is taken (CPU and memory capacity
multiplied by the over-commit ratios; GPUs are whole devices and never
over-committed), and offers the OpenGL back end the environment asks for:
glx (a 3DX server), egl (a render device: a shared one not held for exclusive
use, or for exclusive use one no session holds), any (glx, else egl).

What is taken, for CPU and memory each, is the larger of what sessions reserved and
what the node's containers were measured to use (usage): reservations alone miss a
node kept busy by work ASCI did not start, and measurements alone miss a session
that is idle now but may use its whole reservation a minute later. A node without a
recent measurement counts its reservations only.

Score: `spread` takes the node whose fullest resource (CPU or memory share after
placing) is lowest — desktops are interactive, so neighbours matter more than
keeping nodes empty; `pack` takes the fullest that fits, leaving whole nodes free
for large environments. Either way a session that needs neither a GPU nor OpenGL
goes to a GPU or OpenGL node only when no other node fits, and ties go to the node whose name sorts first.
"""
from __future__ import annotations

from asci_core.errors import AsciError, UsageError

from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

from .sizes import format_size

Strategy = Literal["spread", "pack"]
OpenGl = Literal["none", "glx", "egl", "any"]
_EPSILON = 1e-9


@dataclass(frozen=True)
class Demand:
    cpus: float
    memory: int
    gpus: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    opengl: OpenGl = "none"
    exclusive_gpus: bool = False

    def describe(self) -> str:
        gpus = f", {self.gpus} GPU{'s' if self.gpus != 1 else ''}" if self.gpus else ""
        gl = "" if self.opengl == "none" else f", OpenGL {self.opengl}{' (exclusive)' if self.exclusive_gpus else ''}"
        return f"{self.cpus:g} CPUs, {format_size(self.memory)}{gpus}{gl}"


@dataclass(frozen=True)
class NodeLoad:
    """A node's capacity, what ASCI sessions have reserved on it and what its containers were measured to use."""

    name: str
    cpus: float
    memory: int
    gpus: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    reserved_cpus: float = 0.0
    reserved_memory: int = 0
    reserved_gpus: int = 0
    sessions: int = 0
    healthy: bool = True
    down_reason: str = ""
    backends: frozenset[str] = frozenset()  # OpenGL back ends: glx, egl
    render_devices: int = 0  # egl devices handed out one per session
    render_devices_free: int = 0  # not held for exclusive use: a shared egl session may have one
    render_devices_idle: int = 0  # held by no session: an exclusive egl session may have one
    measured_cpus: float = 0.0
    measured_memory: int = 0
    measured_at: float | None = None  # None: no recent measurement

    @property
    def used_cpus(self) -> float:
        return max(self.reserved_cpus, self.measured_cpus)

    @property
    def used_memory(self) -> int:
        return max(self.reserved_memory, self.measured_memory)


@dataclass(frozen=True)
class Ratios:
    cpu: float = 1.0
    memory: float = 1.0


class NoNodeFits(AsciError):
    def __init__(self, demand: Demand, reasons: list[tuple[str, str]]):
        self.demand = demand
        self.reasons = reasons
        if not reasons:
            text = "no nodes are configured"
        else:
            text = "; ".join(f"{name}: {why}" for name, why in reasons)
        super().__init__(f"no node can take a session needing {demand.describe()}: {text}")


def backend_for(node: NodeLoad, demand: Demand) -> str | None:
    """The OpenGL back end NODE gives DEMAND: glx, egl, or None (none asked, or none fits)."""
    if demand.opengl == "none":
        return None
    if demand.opengl in ("glx", "any") and not demand.exclusive_gpus and "glx" in node.backends:
        return "glx"
    if demand.opengl in ("egl", "any") and "egl" in node.backends and _egl_problem(node, demand) is None:
        return "egl"
    return None


def _egl_problem(node: NodeLoad, demand: Demand) -> str | None:
    if demand.exclusive_gpus:
        if node.render_devices == 0:
            return "has no render device for exclusive use"
        if node.render_devices_idle == 0:
            return f"all {node.render_devices} render devices are in use, exclusive use needs an idle one"
    elif node.render_devices and node.render_devices_free == 0:
        return f"all {node.render_devices} render devices are held for exclusive use"
    return None


def _opengl_problem(node: NodeLoad, demand: Demand) -> str | None:
    if demand.opengl == "none" or backend_for(node, demand) is not None:
        return None
    wanted = "egl" if demand.opengl == "any" and demand.exclusive_gpus else demand.opengl
    if wanted == "any" and "egl" not in node.backends:
        return "has no OpenGL back end (glx or egl)"
    if wanted in ("glx", "egl") and wanted not in node.backends:
        return f"has no {wanted} OpenGL back end"
    return _egl_problem(node, demand)


def why_not(node: NodeLoad, demand: Demand, ratios: Ratios = Ratios()) -> str | None:
    """Why NODE cannot take DEMAND, or None when it can."""
    if not node.healthy:
        return f"down ({node.down_reason})" if node.down_reason else "down"
    for key, wanted in sorted(demand.labels.items()):
        actual = node.labels.get(key)
        if actual is None:
            return f"has no label {key} ({key}={wanted} required)"
        if actual != wanted:
            return f"label {key} is {actual}, {wanted} required"
    gl = _opengl_problem(node, demand)
    if gl is not None:
        return gl
    reasons: list[str] = []
    if demand.gpus:
        if node.gpus == 0:
            reasons.append(f"has no GPUs, {demand.gpus} needed")
        elif node.reserved_gpus + demand.gpus > node.gpus:
            reasons.append(f"{node.reserved_gpus} of {node.gpus} GPUs reserved, {demand.gpus} needed")
    cpu_limit = node.cpus * ratios.cpu
    if node.used_cpus + demand.cpus > cpu_limit + _EPSILON:
        over = f" ({node.cpus:g} × over-commit {ratios.cpu:g})" if ratios.cpu != 1 else ""
        taken = (f"{node.reserved_cpus:g} of {cpu_limit:g} CPUs reserved{over}"
                 if node.reserved_cpus >= node.measured_cpus else
                 f"{node.measured_cpus:.2f} of {cpu_limit:g} CPUs in use (measured; {node.reserved_cpus:g} reserved)"
                 f"{over}")
        reasons.append(f"{taken}, {demand.cpus:g} needed")
    memory_limit = node.memory * ratios.memory
    if node.used_memory + demand.memory > memory_limit + _EPSILON:
        over = f" ({format_size(node.memory)} × over-commit {ratios.memory:g})" if ratios.memory != 1 else ""
        taken = (f"{format_size(node.reserved_memory)} of {format_size(memory_limit)} memory reserved{over}"
                 if node.reserved_memory >= node.measured_memory else
                 f"{format_size(node.measured_memory)} of {format_size(memory_limit)} memory in use "
                 f"(measured; {format_size(node.reserved_memory)} reserved){over}")
        reasons.append(f"{taken}, {format_size(demand.memory)} needed")
    return " and ".join(reasons) or None


def _fullness(node: NodeLoad, demand: Demand, ratios: Ratios) -> float:
    cpu_limit = node.cpus * ratios.cpu
    memory_limit = node.memory * ratios.memory
    cpu = (node.used_cpus + demand.cpus) / cpu_limit if cpu_limit > 0 else 1.0
    memory = (node.used_memory + demand.memory) / memory_limit if memory_limit > 0 else 1.0
    # Rounded so that equal loads computed in a different order still tie and fall to the name.
    return round(max(cpu, memory), 9)


def candidates(demand: Demand, nodes: Iterable[NodeLoad], ratios: Ratios = Ratios()
               ) -> tuple[list[NodeLoad], list[tuple[str, str]]]:
    """The nodes that can take DEMAND, and (name, reason) for each that cannot, by name."""
    fitting: list[NodeLoad] = []
    passed_over: list[tuple[str, str]] = []
    for node in sorted(nodes, key=lambda n: n.name):
        reason = why_not(node, demand, ratios)
        if reason is None:
            fitting.append(node)
        else:
            passed_over.append((node.name, reason))
    return fitting, passed_over


def place(demand: Demand, nodes: Iterable[NodeLoad], strategy: Strategy = "spread",
          ratios: Ratios = Ratios()) -> NodeLoad:
    """The node for DEMAND; NoNodeFits naming each node and why when there is none."""
    if strategy not in ("spread", "pack"):
        raise ValueError(f"unknown placement strategy {strategy!r}")
    fitting, passed_over = candidates(demand, nodes, ratios)
    if not fitting:
        raise NoNodeFits(demand, passed_over)
    sign = 1 if strategy == "spread" else -1

    def score(node: NodeLoad) -> tuple[bool, float, str]:
        spares_gpus = demand.gpus == 0 and demand.opengl == "none" and (node.gpus > 0 or bool(node.backends))
        return spares_gpus, sign * _fullness(node, demand, ratios), node.name

    return min(fitting, key=score)
