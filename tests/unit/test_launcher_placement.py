from __future__ import annotations

import random

import pytest

from asci_core.launcher.placement import Demand, NodeLoad, NoNodeFits, Ratios, candidates, place, why_not

GiB = 1024 ** 3


def node(name: str, cpus: float = 4, memory: int = 16 * GiB, **kw) -> NodeLoad:
    return NodeLoad(name, cpus, memory, **kw)


SMALL = Demand(1, 2 * GiB)


def reasons_of(demand: Demand, nodes: list[NodeLoad], **kw) -> dict[str, str]:
    with pytest.raises(NoNodeFits) as info:
        place(demand, nodes, **kw)
    assert "\n" not in str(info.value)
    return dict(info.value.reasons)


def test_spread_takes_the_least_loaded_and_pack_the_fullest():
    nodes = [node("a", reserved_cpus=3), node("b", reserved_cpus=1), node("c", reserved_cpus=2)]
    assert place(SMALL, nodes, "spread").name == "b"
    assert place(SMALL, nodes, "pack").name == "a"


def test_the_fullest_resource_decides_the_load():
    # a: CPU half used; b: memory 3/4 used. Spread must prefer a.
    nodes = [node("a", reserved_cpus=2), node("b", reserved_memory=12 * GiB)]
    assert place(SMALL, nodes, "spread").name == "a"
    assert place(SMALL, nodes, "pack").name == "b"


def test_ties_go_to_the_first_name_whatever_the_input_order():
    nodes = [node(n) for n in ("n3", "n1", "n2")]
    for _ in range(10):
        random.shuffle(nodes)
        assert place(SMALL, nodes, "spread").name == "n1"
        assert place(SMALL, nodes, "pack").name == "n1"


def test_an_exact_fit_fits_and_one_more_does_not():
    exact = node("a", cpus=4, memory=8 * GiB, reserved_cpus=3, reserved_memory=6 * GiB)
    assert place(Demand(1, 2 * GiB), [exact]).name == "a"
    assert reasons_of(Demand(1.5, 2 * GiB), [exact]) == {"a": "3 of 4 CPUs reserved, 1.5 needed"}
    assert reasons_of(Demand(1, 2 * GiB + 1), [exact]) == {
        "a": "6 GiB of 8 GiB memory reserved, 2 GiB needed"}


def test_floating_point_sums_still_fit_exactly():
    n = node("a", cpus=1, reserved_cpus=0.1 + 0.2 + 0.3 + 0.1 + 0.1)  # 0.7999999999999999 or so
    assert place(Demand(0.2, GiB), [n]).name == "a"


def test_zero_nodes_is_named():
    with pytest.raises(NoNodeFits, match="no nodes are configured"):
        place(SMALL, [])


def test_the_error_names_each_node_and_why():
    nodes = [node("node1", healthy=False, down_reason="timed out"),
             node("node2", reserved_cpus=3.5),
             node("node3", labels={"beamline": "i04"}),
             node("node4", labels={})]
    demand = Demand(2, 2 * GiB, labels={"beamline": "i03"})
    got = reasons_of(demand, nodes)
    assert got == {"node1": "down (timed out)",
                   "node2": "has no label beamline (beamline=i03 required)",
                   "node3": "label beamline is i04, i03 required",
                   "node4": "has no label beamline (beamline=i03 required)"}
    message = reasons_of(Demand(2, 2 * GiB), nodes[:2])
    assert message["node2"] == "3.5 of 4 CPUs reserved, 2 needed"
    with pytest.raises(NoNodeFits) as info:
        place(Demand(2, 2 * GiB), [nodes[0], nodes[1]])
    assert str(info.value) == ("no node can take a session needing 2 CPUs, 2 GiB: node1: down (timed out); "
                               "node2: 3.5 of 4 CPUs reserved, 2 needed")


def test_unhealthy_nodes_are_never_chosen_even_when_empty():
    nodes = [node("a", healthy=False), node("b", reserved_cpus=3)]
    assert place(SMALL, nodes).name == "b"
    assert reasons_of(SMALL, [node("a", healthy=False)]) == {"a": "down"}


def test_labels_must_all_match():
    demand = Demand(1, GiB, labels={"beamline": "i03", "gpu": "a100"})
    nodes = [node("a", labels={"beamline": "i03"}), node("b", labels={"beamline": "i03", "gpu": "a100", "x": "y"})]
    assert place(demand, nodes).name == "b"


def test_overcommit_ratios_stretch_cpu_and_memory():
    full = node("a", cpus=4, memory=8 * GiB, reserved_cpus=4, reserved_memory=8 * GiB)
    assert reasons_of(SMALL, [full]) == {
        "a": "4 of 4 CPUs reserved, 1 needed and 8 GiB of 8 GiB memory reserved, 2 GiB needed"}
    assert place(SMALL, [full], ratios=Ratios(cpu=2, memory=1.25)).name == "a"
    got = reasons_of(Demand(5, GiB), [full], ratios=Ratios(cpu=2, memory=2))
    assert got == {"a": "4 of 8 CPUs reserved (4 × over-commit 2), 5 needed"}
    # A ratio below 1 keeps headroom free.
    assert reasons_of(Demand(1, GiB), [node("b", cpus=4, reserved_cpus=2.5)], ratios=Ratios(cpu=0.75)) == {
        "b": "2.5 of 3 CPUs reserved (4 × over-commit 0.75), 1 needed"}


def test_gpus_are_counted_whole_and_never_overcommitted():
    demand = Demand(1, GiB, gpus=2)
    nodes = [node("cpu-only"), node("g1", gpus=2, reserved_gpus=1), node("g2", gpus=4, reserved_gpus=2)]
    assert place(demand, nodes, ratios=Ratios(cpu=4, memory=4)).name == "g2"
    assert reasons_of(Demand(1, GiB, gpus=3), nodes) == {
        "cpu-only": "has no GPUs, 3 needed", "g1": "1 of 2 GPUs reserved, 3 needed", "g2": "2 of 4 GPUs reserved, 3 needed"}


def test_sessions_without_gpus_keep_off_gpu_nodes_while_others_fit():
    nodes = [node("a-gpu", gpus=1), node("b", reserved_cpus=3)]
    assert place(SMALL, nodes, "spread").name == "b"
    assert place(SMALL, [node("a-gpu", gpus=1), node("b", reserved_cpus=4)]).name == "a-gpu"


def test_candidates_split_fitting_and_passed_over_in_name_order():
    fitting, passed = candidates(SMALL, [node("z"), node("y", healthy=False), node("x")])
    assert [n.name for n in fitting] == ["x", "z"] and passed == [("y", "down")]
    assert why_not(node("x"), SMALL) is None


def test_an_unknown_strategy_is_a_programming_error():
    with pytest.raises(ValueError):
        place(SMALL, [node("a")], "random")  # type: ignore[arg-type]


def test_same_input_same_answer_many_nodes():
    rng = random.Random(7)
    nodes = [node(f"n{i:03}", cpus=rng.choice([8, 16, 32]), reserved_cpus=rng.randrange(8)) for i in range(100)]
    first = place(Demand(2, 4 * GiB), nodes, "spread").name
    assert all(place(Demand(2, 4 * GiB), list(reversed(nodes)), "spread").name == first for _ in range(5))


# --- measured usage: what is taken is the larger of reserved and measured ------------------------

def test_a_node_busy_with_work_asci_did_not_start_is_passed_over_with_the_measured_figure():
    busy = node("a", cpus=2, measured_cpus=1.5, measured_at=1.0)
    idle = node("b", cpus=2, reserved_cpus=0.5)
    assert place(Demand(1, GiB), [busy, idle], "pack").name == "b"
    reasons = reasons_of(Demand(1.8, GiB), [busy, idle])
    assert reasons["a"] == "1.50 of 2 CPUs in use (measured; 0 reserved), 1.8 needed"
    assert reasons["b"] == "0.5 of 2 CPUs reserved, 1.8 needed"


def test_an_idle_session_still_holds_its_reservation():
    # Measured below reserved: the session may use its whole reservation a minute later.
    quiet = node("a", cpus=2, reserved_cpus=1.5, measured_cpus=0.1, measured_at=1.0)
    assert reasons_of(Demand(1, GiB), [quiet]) == {"a": "1.5 of 2 CPUs reserved, 1 needed"}


def test_measured_memory_counts_like_reserved_memory():
    full = node("a", memory=4 * GiB, reserved_memory=GiB, measured_memory=3 * GiB + GiB // 2, measured_at=1.0)
    reasons = reasons_of(Demand(1, GiB), [full])
    assert reasons["a"] == "3.5 GiB of 4 GiB memory in use (measured; 1 GiB reserved), 1 GiB needed"


def test_spread_prefers_the_node_whose_containers_really_use_less():
    # Equal reservations: the measured figure decides.
    nodes = [node("a", reserved_cpus=1, measured_cpus=3, measured_at=1.0),
             node("b", reserved_cpus=1, measured_cpus=0.2, measured_at=1.0)]
    assert place(SMALL, nodes, "spread").name == "b"
    assert place(SMALL, nodes, "pack").name == "a"


def test_measured_usage_is_judged_against_the_over_committed_limit():
    busy = node("a", cpus=2, measured_cpus=1.9, measured_at=1.0)
    assert place(Demand(1, GiB), [busy], ratios=Ratios(cpu=2)).name == "a"
    reasons = reasons_of(Demand(2.5, GiB), [busy], ratios=Ratios(cpu=2))
    assert reasons["a"] == "1.90 of 4 CPUs in use (measured; 0 reserved) (2 × over-commit 2), 2.5 needed"
