from __future__ import annotations

import pytest

from asci_core.launcher.mount_templates import MountTemplateError, Substitution, render, template_problem, template_root
from asci_core.launcher.sizes import format_size, parse_size

ALICE = Substitution("alice", 1001, 2001)


def test_templates_render_per_user():
    assert render("/data/{user}", ALICE) == "/data/alice"
    assert render("/home/{user}/data", ALICE) == "/home/alice/data"
    assert render("/scratch/u{uid}-g{gid}", ALICE) == "/scratch/u1001-g2001"
    assert render("/opt/software", ALICE) == "/opt/software"


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../../etc"])
def test_a_name_that_would_leave_the_root_is_refused_at_use(name):
    with pytest.raises(MountTemplateError, match="would leave /data"):
        render("/data/{user}", Substitution(name, 1001, 1001))


def test_the_root_is_the_fixed_leading_part():
    assert template_root("/data/{user}/work") == "/data"
    assert template_root("/srv/beamline/u{uid}") == "/srv/beamline"
    assert template_root("/opt/software") == "/opt/software"


@pytest.mark.parametrize("template,words", [
    ("data/{user}", "absolute"),
    ("/data/../{user}", "'..'"),
    ("/data/./{user}", "'..'"),
    ("/data//{user}", "empty path component"),
    ("/{user}", "first directory must be fixed"),
    ("/{user}/data", "first directory must be fixed"),
    ("/data/{password}", "unknown placeholder {password}"),
    ("/data/{user.__class__}", "unknown placeholder"),
    ("/data/{user", "not a valid template"),
    ("/", "not allowed"),
    ("/etc", "not allowed"),
])
def test_obviously_bad_templates_are_refused(template, words):
    problem = template_problem(template)
    assert problem is not None and words in problem
    with pytest.raises(MountTemplateError):
        render(template, ALICE)


def test_sizes():
    assert parse_size("4g") == 4 * 1024 ** 3
    assert parse_size("512M") == 512 * 1024 ** 2
    assert parse_size("1.5GiB") == int(1.5 * 1024 ** 3)
    assert parse_size("1073741824") == 1073741824
    assert parse_size(2048) == 2048
    for bad in ("", "4 gigs", "-1g", "0", "g", True):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert format_size(3.5 * 1024 ** 3) == "3.5 GiB" and format_size(512 * 1024 ** 2) == "512 MiB"
