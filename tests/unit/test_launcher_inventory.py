from __future__ import annotations

from pathlib import Path

import pytest

from asci_core.launcher.inventory import (Capacity, Reservation, dri_render_nodes, free_gpu_ids, node_loads,
                                          parse_nvidia_smi, reservation_from_container)

# Recorded from `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader` on a 4-GPU node
# (driver 535) and a workstation whose board reports no memory figure.
RECORDED_A100 = """0, NVIDIA A100-SXM4-40GB, 40960 MiB
1, NVIDIA A100-SXM4-40GB, 40960 MiB
2, NVIDIA A100-SXM4-40GB, 40960 MiB
3, NVIDIA A100-SXM4-40GB, 40960 MiB
"""
RECORDED_NA = "0, NVIDIA GeForce GT 710, [N/A]\n"
RECORDED_NOUNITS = "0, Tesla T4, 15360\n1, Tesla T4, 15360\n"

GiB = 1024 ** 3


def test_nvidia_smi_output_is_parsed():
    gpus = parse_nvidia_smi(RECORDED_A100)
    assert [g.index for g in gpus] == ["0", "1", "2", "3"]
    assert gpus[0].name == "NVIDIA A100-SXM4-40GB" and gpus[0].memory_mib == 40960
    assert parse_nvidia_smi(RECORDED_NA)[0].memory_mib is None
    assert [g.memory_mib for g in parse_nvidia_smi(RECORDED_NOUNITS)] == [15360, 15360]
    assert parse_nvidia_smi("") == [] and parse_nvidia_smi("\n\n") == []


def test_an_error_message_is_not_taken_for_gpus():
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n")


def test_dri_render_nodes_are_found(tmp_path: Path):
    for name in ("card0", "renderD129", "renderD128", "by-path"):
        (tmp_path / name).touch()
    assert [p.name for p in dri_render_nodes(tmp_path)] == ["renderD128", "renderD129"]
    assert dri_render_nodes(tmp_path / "missing") == []


def test_reservation_labels_round_trip():
    r = Reservation("0123456789abcdef", "node1", "alice", "desktop", 1.5, 3 * GiB, 2, ("0", "3"))
    summary = {"Id": "c1", "State": "running",
               "Labels": {**r.labels(), "asci.user": "alice", "asci.environment": "desktop"}}
    back = reservation_from_container("node1", summary)
    assert back == Reservation("0123456789abcdef", "node1", "alice", "desktop", 1.5, 3 * GiB, 2, ("0", "3"), "c1")


@pytest.mark.parametrize("labels", [{}, {"asci.session": "x"}, {"asci.session": "x", "asci.cpus": "lots",
                                                                 "asci.memory": "1"}])
def test_containers_without_complete_labels_are_not_reservations(labels):
    assert reservation_from_container("n", {"Id": "c", "State": "running", "Labels": labels}) is None


def test_node_loads_sum_reservations_per_node():
    capacities = {"a": Capacity(8, 32 * GiB, 2, ("0", "1")), "b": Capacity(4, 16 * GiB, 0)}
    reservations = [Reservation("s1", "a", "u", "e", 2, 4 * GiB, 1, ("1",)),
                    Reservation("s2", "a", "u", "e", 1.5, 2 * GiB),
                    Reservation("s3", "b", "u", "e", 1, GiB),
                    Reservation("s4", "gone", "u", "e", 1, GiB)]
    loads = {n.name: n for n in node_loads(capacities, reservations, down={"c": "timed out"})}
    assert (loads["a"].reserved_cpus, loads["a"].reserved_memory, loads["a"].reserved_gpus, loads["a"].sessions) == (
        3.5, 6 * GiB, 1, 2)
    assert loads["b"].sessions == 1 and loads["b"].healthy
    assert not loads["c"].healthy and loads["c"].down_reason == "timed out"
    assert free_gpu_ids(capacities["a"], reservations, "a") == ["0"]


def test_every_scope_has_its_own_label_and_the_default_scope_is_named():
    from asci_core.launcher.inventory import SCOPE_LABEL, scope_filter, scope_labels

    assert scope_labels({}) == {SCOPE_LABEL: "default"}
    assert scope_labels({"asci.test": "run1"}) == {"asci.test": "run1", SCOPE_LABEL: "asci.test=run1"}
    # The production filter names its own scope: a test run's sessions never match it.
    assert f"{SCOPE_LABEL}=default" in scope_filter({})
    assert f"{SCOPE_LABEL}=default" not in scope_filter({"asci.test": "run1"})
