from __future__ import annotations

from autobuild.inheritance import Graph, parse_from_lines, split_reference


def test_from_lines_with_args_stages_platform_and_continuations():
    dockerfile = """
# comment
ARG REG=registry:5000
ARG BASE_TAG=v1.0.0
FROM --platform=linux/amd64 ${REG}/bl/base:${BASE_TAG} AS build
RUN make \\
    all
FROM build AS test
FROM scratch
FROM \\
  registry:5000/bl/tools:latest
COPY --from=build /out /out
"""
    lines = parse_from_lines(dockerfile)
    assert [(l.image, l.tag_arg) for l in lines] == [
        ("registry:5000/bl/base:v1.0.0", "BASE_TAG"), ("registry:5000/bl/tools:latest", None)]
    overridden = parse_from_lines(dockerfile, {"BASE_TAG": "v2.0.0"})
    assert overridden[0].image == "registry:5000/bl/base:v2.0.0"


def test_split_reference():
    assert split_reference("registry:5000/bl/base:v1") == ("registry:5000/bl/base", "v1")
    assert split_reference("registry:5000/bl/base") == ("registry:5000/bl/base", "latest")
    assert split_reference("bl/base@sha256:abc") == ("bl/base", "latest")


def graph() -> Graph:
    images = {r: f"reg/{r}" for r in ("base", "mid", "leaf", "other", "x", "y")}
    bases = {"mid": ["reg/base:v1"], "leaf": ["reg/mid:latest", "reg/base:v1"], "other": ["debian:bookworm"],
             "x": ["reg/y:1"], "y": ["reg/x:1"]}
    return Graph.build(images, bases)


def test_descendants_come_parents_first_each_once():
    g = graph()
    assert g.descendants_in_order("base") == ["mid", "leaf"]
    assert g.descendants_in_order("mid") == ["leaf"]
    assert g.descendants_in_order("other") == []


def test_cycles_are_found_and_never_followed():
    g = graph()
    assert len(g.cycles) == 1 and set(g.cycles[0]) == {"x", "y"}
    assert g.descendants_in_order("x") == []
    assert "CYCLE: x -> y -> x" in g.render()
