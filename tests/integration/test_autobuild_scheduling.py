"""Many tags at once, and images built FROM other images the pipeline builds."""
from __future__ import annotations

import itertools
import uuid

import pytest
import requests

from registry.client import RegistryClient
from tests.conftest import free_port
from tests.integration.autobuild_support import GitRemote, Serve, autobuild_config, deliver, server_payload

TOKEN = uuid.uuid4().hex[:8]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def test_twenty_tags_five_repositories_concurrency_two(stack, tmp_path):
    repos = [f"TC/multi{i}-{TOKEN}" for i in range(5)]
    remote = GitRemote(tmp_path / "git")
    port = free_port()
    config = autobuild_config(tmp_path / "asci.yaml", config=stack.config,
                              workdir=tmp_path / "work", git_root=tmp_path / "git", port=port, concurrency=2,
                              repositories=[{"name": r, "image": f"asci-test/multi{i}-{TOKEN}"}
                                            for i, r in enumerate(repos)])
    tiny = stack.config.stack.base_image.tiny_name
    deliveries = []
    for i, repo in enumerate(repos):
        tree = remote.create(repo, {"Dockerfile": f"FROM {tiny}\nRUN echo {i}.0 > /v\n"})
        for n in range(4):
            if n:
                tree.commit({"Dockerfile": f"FROM {tiny}\nRUN echo {i}.{n} > /v\n"}, f"change {n}")
            deliveries.append((repo, f"v1.{n}.0", tree.tag(f"v1.{n}.0")))
    serve = Serve(config, port, tmp_path / "serve.log").start()
    try:
        ids = []
        for repo, tag, commit in deliveries:
            resp = deliver(serve.url, server_payload(repo, tag, commit))
            assert resp.status_code == 202
            ids.append(resp.json()["changes"][0]["build_id"])
        builds = [serve.wait(i, timeout=600) for i in ids]
    finally:
        serve.stop()
    assert [b["status"] for b in builds] == ["succeeded"] * 20
    spans = [(b["started_at"], b["finished_at"]) for b in builds]
    assert max_overlap(spans) == 2  # the pool was used, and never exceeded
    by_image = {image: [(b["started_at"], b["finished_at"]) for b in group]
                for image, group in itertools.groupby(sorted(builds, key=lambda b: b["image"]), key=lambda b: b["image"])}
    assert all(max_overlap(s) == 1 for s in by_image.values())
    client = RegistryClient(stack.registry)
    for i in range(5):
        assert sorted(client.tags(f"asci-test/multi{i}-{TOKEN}")) == ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"]


@pytest.fixture
def family(stack, tmp_path):
    """base ← child (tag from an ARG) ← grandchild (FROM child:latest), plus two repositories that will form a cycle."""
    names = {k: f"TI/{k}-{TOKEN}" for k in ("base", "child", "grand", "loopa", "loopb")}
    images = {k: f"asci-test/{k}-{TOKEN}" for k in names}
    remote = GitRemote(tmp_path / "git")
    port = free_port()
    config = autobuild_config(tmp_path / "asci.yaml", config=stack.config,
                              workdir=tmp_path / "work", git_root=tmp_path / "git", port=port, concurrency=2,
                              repositories=[{"name": names[k], "image": images[k], "move_latest": True}
                                            for k in names])
    serve = Serve(config, port, tmp_path / "serve.log").start()
    yield names, images, remote, serve
    serve.stop()


def build_tag(serve, tree, name, tag) -> dict:
    resp = deliver(serve.url, server_payload(name, tag, tree.tag(tag)))
    assert resp.status_code == 202, resp.text
    build = serve.wait(resp.json()["changes"][0]["build_id"])
    assert build["status"] == "succeeded", serve.log(build["id"])
    return build


def test_new_base_version_rebuilds_children_in_order(family, stack, docker_client):
    names, images, remote, serve = family
    reg = stack.registry.address
    tiny = stack.config.stack.base_image.tiny_name
    base = remote.create(names["base"], {"Dockerfile": f"FROM {tiny}\nRUN echo base-1 > /base\n"})
    build_tag(serve, base, names["base"], "v1.0.0")
    child = remote.create(names["child"], {"Dockerfile": (
        f"ARG BASE_TAG=v1.0.0\nFROM {reg}/{images['base']}:${{BASE_TAG}}\nRUN cat /base > /seen-by-child\n")})
    child_v1 = build_tag(serve, child, names["child"], "v2.0.0")
    grand = remote.create(names["grand"], {"Dockerfile": (
        f"FROM {reg}/{images['child']}:latest AS parent\nFROM parent\nRUN cat /seen-by-child > /seen-by-grand\n")})
    grand_v1 = build_tag(serve, grand, names["grand"], "v3.0.0")

    graph = requests.get(f"{serve.url}/builds/graph", timeout=5).json()
    assert graph["children"][names["base"]] == [names["child"]]
    assert graph["children"][names["child"]] == [names["grand"]]
    assert graph["cycles"] == []

    base.commit({"Dockerfile": f"FROM {tiny}\nRUN echo base-2 > /base\n"}, "base 2")
    root = build_tag(serve, base, names["base"], "v1.1.0")
    rebuilds = [b for b in serve.builds() if b["trigger"] == "rebuild" and b["triggered_by"] == root["id"]]
    assert sorted(b["repository"] for b in rebuilds) == sorted([names["child"], names["grand"]])
    done = {b["repository"]: serve.wait(b["id"]) for b in rebuilds}
    child_rb, grand_rb = done[names["child"]], done[names["grand"]]
    assert child_rb["status"] == grand_rb["status"] == "succeeded"
    assert child_rb["build_args"] == {"BASE_TAG": "v1.1.0"}
    assert child_rb["finished_at"] <= grand_rb["started_at"]  # parents first
    assert grand_rb["depends_on"] == [child_rb["id"]]
    assert child_rb["tag"] == "v2.0.0" and child_rb["commit_sha"] == child_v1["commit_sha"]
    assert child_rb["digest"] != child_v1["digest"] and grand_rb["digest"] != grand_v1["digest"]
    assert "children queued for rebuild" in serve.log(root["id"])

    image = f"{reg}/{images['grand']}"
    docker_client.images.pull(image, tag="v3.0.0", auth_config=stack.registry.auth_config())
    out = docker_client.containers.run(f"{image}:v3.0.0", ["cat", "/seen-by-grand"], remove=True)
    assert out.decode().strip() == "base-2"  # the new base reached the grandchild

    # Each child once: the same base version delivered again rebuilds nothing more.
    deliver(serve.url, server_payload(names["base"], "v1.1.0", root["commit_sha"]), request_id="again")
    assert len([b for b in serve.builds() if b["trigger"] == "rebuild"]) == 2


def test_cycle_in_from_lines_is_reported_not_looped(family, stack):
    names, images, remote, serve = family
    reg = stack.registry.address
    tiny = stack.config.stack.base_image.tiny_name
    a = remote.create(names["loopa"], {"Dockerfile": f"FROM {tiny}\n"})
    build_tag(serve, a, names["loopa"], "v1.0.0")
    b = remote.create(names["loopb"], {"Dockerfile": f"FROM {reg}/{images['loopa']}:latest\nRUN true\n"})
    build_tag(serve, b, names["loopb"], "v1.0.0")
    a.commit({"Dockerfile": f"FROM {reg}/{images['loopb']}:latest\nRUN true\n"}, "now FROM b")
    closing = build_tag(serve, a, names["loopa"], "v1.1.0")
    graph = requests.get(f"{serve.url}/builds/graph", timeout=5).json()
    assert len(graph["cycles"]) == 1 and set(graph["cycles"][0]) == {names["loopa"], names["loopb"]}
    assert "CYCLE:" in graph["text"]
    assert "inheritance cycle, not rebuilt" in serve.log(closing["id"])
    assert [x for x in serve.builds() if x["trigger"] == "rebuild"] == []
