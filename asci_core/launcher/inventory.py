"""What a node offers (capacity) and what ASCI sessions hold on it (reservations).

Capacity is configured per node; what is not configured comes from the engine
(`info()`: NCPU, MemTotal) and, for GPUs on the local node, from `nvidia-smi` or
/dev/dri. Engines in namespaces or VMs report the host's figures, so configure
capacity wherever several engines share a machine.

Load is what sessions *reserved*, read from the labels every session container
carries (asci.cpus, asci.memory, asci.gpus — written from the same numbers as its
limits — and, for OpenGL sessions, asci.opengl, asci.render-devices, asci.render-exclusive). One
container listing per node answers it, with no inspect per container, and a container that
exited reserves nothing. What the node's containers really use is sampled in the background
(usage) and joins it here.
"""
from __future__ import annotations

import csv
import io
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .placement import NodeLoad
from .usage import NodeUsage

COMPONENT = "session"
SESSION_LABEL = "asci.session"
CPUS_LABEL = "asci.cpus"
MEMORY_LABEL = "asci.memory"
GPUS_LABEL = "asci.gpus"
GPU_IDS_LABEL = "asci.gpu-ids"
OPENGL_LABEL = "asci.opengl"
RENDER_DEVICES_LABEL = "asci.render-devices"
RENDER_EXCLUSIVE_LABEL = "asci.render-exclusive"
# Engine states in which a container holds its resources.
HOLDING_STATES = ("created", "running", "restarting", "paused")


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    memory_mib: int | None = None


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """GPUs from `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader`."""
    gpus: list[Gpu] = []
    for row in csv.reader(io.StringIO(output)):
        cells = [c.strip() for c in row]
        if not cells or not cells[0]:
            continue
        if len(cells) < 2 or not cells[0].isdigit():
            raise ValueError(f"unexpected nvidia-smi line: {','.join(row)!r}")
        memory = None
        if len(cells) > 2:
            number = cells[2].split()[0] if cells[2] else ""
            memory = int(number) if number.isdigit() else None  # "[N/A]" on some boards
        gpus.append(Gpu(cells[0], cells[1], memory))
    return gpus


def dri_render_nodes(dev: Path = Path("/dev/dri")) -> list[Path]:
    """Render nodes (renderD128, ...): one per GPU that Mesa/VA-API can use."""
    try:
        return sorted(p for p in dev.iterdir() if p.name.startswith("renderD"))
    except OSError:
        return []


def detect_local_gpus(dev: Path = Path("/dev/dri")) -> list[Gpu]:
    """GPUs of this machine: NVIDIA through nvidia-smi, else one per DRI render node."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=10, check=True)
            return parse_nvidia_smi(done.stdout)
        except (OSError, subprocess.SubprocessError, ValueError):
            pass  # a driver without devices: fall through to DRI
    return [Gpu(p.name, "dri") for p in dri_render_nodes(dev)]


@dataclass(frozen=True)
class Capacity:
    cpus: float
    memory: int
    gpus: int
    gpu_ids: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    gl_backends: frozenset[str] = frozenset()
    render_devices: tuple[str, ...] = ()  # the egl devices handed out one per session


@dataclass(frozen=True)
class Reservation:
    session: str
    node: str
    user: str
    environment: str
    cpus: float
    memory: int
    gpus: int = 0
    gpu_ids: tuple[str, ...] = ()
    container_id: str = ""
    state: str = "running"
    opengl: str = ""  # the back end it was given: glx, egl, or none
    render_devices: tuple[str, ...] = ()
    render_exclusive: bool = False

    def labels(self) -> dict[str, str]:
        labels = {SESSION_LABEL: self.session, CPUS_LABEL: f"{self.cpus:g}", MEMORY_LABEL: str(self.memory),
                  GPUS_LABEL: str(self.gpus), GPU_IDS_LABEL: ",".join(self.gpu_ids)}
        if self.opengl:
            labels.update({OPENGL_LABEL: self.opengl, RENDER_DEVICES_LABEL: ",".join(self.render_devices),
                           RENDER_EXCLUSIVE_LABEL: "1" if self.render_exclusive else "0"})
        return labels


def reservation_from_container(node: str, summary: Mapping[str, Any]) -> Reservation | None:
    """A session container from the engine's listing, or None when its labels are not ASCI's."""
    labels = summary.get("Labels") or {}
    try:
        return Reservation(
            session=labels[SESSION_LABEL], node=node, user=labels.get("asci.user", ""),
            environment=labels.get("asci.environment", ""), cpus=float(labels[CPUS_LABEL]),
            memory=int(labels[MEMORY_LABEL]), gpus=int(labels.get(GPUS_LABEL) or 0),
            gpu_ids=tuple(i for i in (labels.get(GPU_IDS_LABEL) or "").split(",") if i),
            container_id=summary.get("Id", ""), state=summary.get("State", ""),
            opengl=labels.get(OPENGL_LABEL, ""),
            render_devices=tuple(d for d in (labels.get(RENDER_DEVICES_LABEL) or "").split(",") if d),
            render_exclusive=labels.get(RENDER_EXCLUSIVE_LABEL) == "1")
    except (KeyError, ValueError):
        return None


SCOPE_LABEL = "asci.launcher-scope"
DEFAULT_SCOPE = "default"


def scope_labels(scope: Mapping[str, str]) -> dict[str, str]:
    """The labels a launcher of SCOPE stamps on its sessions, and the only ones it lists.

    Every session carries one scope label, so the production launcher (no scope) never takes a
    test run's sessions for orphans, and a test run never sees production's: the engine's label
    filter cannot ask for a label to be absent.
    """
    name = ",".join(f"{k}={v}" for k, v in sorted(scope.items())) or DEFAULT_SCOPE
    return {**scope, SCOPE_LABEL: name}


def scope_filter(scope: Mapping[str, str]) -> list[str]:
    return [f"asci.component={COMPONENT}", *(f"{k}={v}" for k, v in sorted(scope_labels(scope).items()))]


def list_session_containers(client: Any, scope: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every session container on the engine behind CLIENT within SCOPE: one API call."""
    return client.api.containers(all=True, filters={"label": scope_filter(scope)})


def holds_resources(reservation: Reservation) -> bool:
    return reservation.state in HOLDING_STATES


def node_loads(capacities: Mapping[str, Capacity], reservations: Iterable[Reservation],
               down: Mapping[str, str] | None = None, usage: Mapping[str, NodeUsage] | None = None) -> list[NodeLoad]:
    """Placement's view: capacity, reservations and measured USAGE per node; nodes in DOWN are unhealthy."""
    down = down or {}
    usage = usage or {}
    totals = {name: [0.0, 0, 0, 0] for name in capacities}
    rendering: dict[str, list[Reservation]] = {}  # the few sessions holding render devices, per node
    for r in reservations:
        if r.node in totals:
            t = totals[r.node]
            t[0] += r.cpus
            t[1] += r.memory
            t[2] += r.gpus
            t[3] += 1
            if r.render_devices:
                rendering.setdefault(r.node, []).append(r)
    loads = [NodeLoad(name, c.cpus, c.memory, c.gpus, c.labels, t[0], t[1], t[2], t[3],
                      healthy=name not in down, down_reason=down.get(name, ""),
                      **_render_load(name, c, rendering.get(name, [])),
                      **_measured(usage.get(name)))
             for name, c in capacities.items() for t in (totals[name],)]
    for name, reason in down.items():
        if name not in capacities:
            loads.append(NodeLoad(name, 0, 0, healthy=False, down_reason=reason))
    return loads


def _render_load(node: str, capacity: Capacity, reservations: Iterable[Reservation]) -> dict[str, Any]:
    exclusive, used = _render_use(node, reservations)
    devices = capacity.render_devices
    return dict(backends=capacity.gl_backends, render_devices=len(devices),
                render_devices_free=sum(d not in exclusive for d in devices),
                render_devices_idle=sum(d not in used for d in devices))


def _render_use(node: str, reservations: Iterable[Reservation]) -> tuple[set[str], dict[str, int]]:
    """The node's devices held for exclusive use, and how many sessions hold each device."""
    exclusive: set[str] = set()
    used: dict[str, int] = {}
    for r in reservations:
        if r.node != node:
            continue
        for device in r.render_devices:
            used[device] = used.get(device, 0) + 1
            if r.render_exclusive:
                exclusive.add(device)
    return exclusive, used


def render_device_for(capacity: Capacity, reservations: Iterable[Reservation], node: str,
                      exclusive: bool) -> tuple[str, ...]:
    """The render device a new egl session on NODE gets: for exclusive use one no session holds, else
    the least shared one not held exclusively (ties: configured order); () when the node lists none."""
    held, used = _render_use(node, reservations)
    if exclusive:
        idle = [d for d in capacity.render_devices if d not in used]
        return tuple(idle[:1])
    open_ = [d for d in capacity.render_devices if d not in held]
    return (min(open_, key=lambda d: used.get(d, 0)),) if open_ else ()


def _measured(usage: NodeUsage | None) -> dict[str, object]:
    if usage is None:
        return {}
    return dict(measured_cpus=usage.cpus, measured_memory=usage.memory, measured_at=usage.at)


def free_gpu_ids(capacity: Capacity, reservations: Iterable[Reservation], node: str) -> list[str]:
    taken = {i for r in reservations if r.node == node for i in r.gpu_ids}
    return [i for i in capacity.gpu_ids if i not in taken]
