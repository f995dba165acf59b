"""`asci nodes list` shows each node's OpenGL back ends and its render devices free for a session."""
from __future__ import annotations

from asci_core.launcher.cli import NODE_HEADER, _node_row

GiB = 1024 ** 3


def node_json(**kw) -> dict:
    base = dict(name="n1", cpus=8.0, memory=32 * GiB, gpus=0, labels={}, reserved_cpus=1.0, reserved_memory=GiB,
                reserved_gpus=0, sessions=1, healthy=True, down_reason="", backends=[], render_devices=0,
                render_devices_free=0, render_devices_idle=0, measured_at=None, measured_cpus=0.0,
                measured_memory=0)
    return {**base, **kw}


def cells(row: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(NODE_HEADER, row))


def test_a_gpu_node_shows_its_back_ends_and_free_render_devices():
    row = cells(_node_row(node_json(backends=["egl", "glx"], render_devices=2, render_devices_free=1)))
    assert (row["GL"], row["RENDER-FREE"]) == ("egl,glx", "1/2")


def test_a_node_without_gl_shows_dashes():
    row = cells(_node_row(node_json()))
    assert (row["GL"], row["RENDER-FREE"]) == ("-", "-")
    assert len(_node_row(node_json())) == len(NODE_HEADER)


def test_egl_on_a_drivers_own_device_shows_no_render_count():
    row = cells(_node_row(node_json(backends=["egl"])))
    assert (row["GL"], row["RENDER-FREE"]) == ("egl", "-")
