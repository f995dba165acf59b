"""Who a session runs as, which images it takes, and the group ids the users file gives."""
from __future__ import annotations

from pathlib import Path

import pytest

from asci_core.config import ConfigError, parse_config
from asci_core.launcher.directory import DirectoryError, Researcher, load_users
from asci_core.launcher.errors import StartFailed
from asci_core.launcher.image_reference import resolve
from asci_core.launcher.session_spec import identity_kwargs
from asci_core.launcher.settings import (DEFAULT_ENVIRONMENT, IMAGE_ACCOUNT_CAPABILITIES, EnvironmentSettings,
                                         with_registry)

ALICE = Researcher("alice", 5001, 5001, ("i03", "i04"), group_ids=(7003,))


def test_engine_accounts_run_as_uid_gid_with_the_directorys_groups_and_the_engine_init():
    kw = identity_kwargs(EnvironmentSettings(name="x", image="asci/tiny:latest", title="Tiny one"), ALICE)
    assert (kw["user"], kw["init"], kw["cap_add"], kw["group_add"]) == ("5001:5001", True, None, ["7003"])
    assert kw["environment"] == {"ASCI_USER": "alice", "ASCI_UID": "5001", "ASCI_GID": "5001",
                                 "ASCI_HOME": "/home/alice", "ASCI_ENVIRONMENT_TITLE": "Tiny one"}


def test_image_accounts_start_as_root_with_exactly_the_entry_points_capabilities_and_no_engine_init():
    kw = identity_kwargs(DEFAULT_ENVIRONMENT, ALICE)
    assert kw["user"] is None and kw["init"] is False and "group_add" not in kw
    assert kw["cap_add"] == sorted(IMAGE_ACCOUNT_CAPABILITIES)
    assert kw["environment"]["ASCI_ENVIRONMENT_TITLE"] == "Debian desktop"


def test_the_registry_placeholder_and_the_newest_syntax_are_accepted_and_checked():
    text = ("launcher:\n  environments:\n"
            "    - {name: a, image: '{registry}/bl/desktop-base@newest'}\n"
            "    - {name: b, image: 'registry.site:5000/bl/desktop-base:1.4'}\n")
    envs = parse_config(text).launcher.environments
    assert envs[0].follows_newest and not envs[1].follows_newest
    assert with_registry(envs[0], "127.0.0.1:5000").image == "127.0.0.1:5000/bl/desktop-base@newest"
    assert with_registry(envs[1], "127.0.0.1:5000") is envs[1]
    for bad in ("bl/desktop-base:1.4@newest", "{registry}bl/x", "bl/x@latest"):
        with pytest.raises(ConfigError, match=r"launcher.environments\[0\].image"):
            parse_config(f"launcher:\n  environments:\n    - {{name: a, image: '{bad}'}}\n")


def test_desktop_titles_the_image_would_refuse_and_half_credentials_are_refused():
    with pytest.raises(ConfigError, match=r"launcher.environments\[0\].title"):
        parse_config("launcher:\n  environments:\n    - {name: a, image: x/y, account: image, title: 'a \"b\"'}\n")
    with pytest.raises(ConfigError, match="launcher.registry_password: registry_username and registry_password"):
        parse_config("launcher:\n  registry_username: puller\n")


def test_newest_is_looked_up_in_the_facility_registry_only():
    assert resolve("127.0.0.1:5000/bl/x:1.2", None) == "127.0.0.1:5000/bl/x:1.2"
    with pytest.raises(StartFailed, match="only be looked up in the facility registry"):
        resolve("other.site:5000/bl/x@newest", None)


def test_group_ids_come_from_the_groups_map_and_old_files_still_load(tmp_path: Path):
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  - {name: alice, uid: 5001, gid: 5001, groups: [i03, i04]}\n"
                    "groups: {i03: 7003}\n")
    assert load_users(path)["alice"].group_ids == (7003,)
    path.write_text("users:\n  - {name: alice, uid: 5001, gid: 5001, groups: [i03]}\n")
    assert load_users(path)["alice"].group_ids == ()
    for bad, words in (("groups: {i03: 7}\n", "groups.i03: expected a gid"), ("groups: [i03]\n", "mapping"),
                       ("others: {}\n", "unknown section")):
        path.write_text("users: []\n" + bad)
        with pytest.raises(DirectoryError, match=words):
            load_users(path)


def test_pull_credentials_default_to_the_registrys_and_a_pull_only_account_replaces_them(tmp_path: Path):
    from asci_core.launcher.sessions import pull_access
    base = f"stack:\n  state_dir: {tmp_path}\n"
    default = pull_access(parse_config(base))
    assert default.address == "127.0.0.1:5000" and default.username is None  # no generated admin in this state dir
    own = pull_access(parse_config(base + "launcher:\n  registry_username: puller\n  registry_password: p-secret\n"))
    assert own.auth_config() == {"username": "puller", "password": "p-secret"} and own.address == default.address


def test_image_accounts_get_the_groups_with_a_gid_as_asci_groups_and_engine_accounts_their_gids():
    path_groups = (("i03", 7003), ("i04", 7004))
    bob = Researcher("bob", 5002, 5002, ("i03", "i04", "nogid"), numbered_groups=path_groups)
    assert bob.group_ids == (7003, 7004)
    image = identity_kwargs(DEFAULT_ENVIRONMENT, bob)
    assert image["environment"]["ASCI_GROUPS"] == "i03:7003,i04:7004" and "group_add" not in image
    engine = identity_kwargs(EnvironmentSettings(name="x", image="asci/tiny:latest"), bob)
    assert engine["group_add"] == ["7003", "7004"] and "ASCI_GROUPS" not in engine["environment"]
    # No numbered group: no variable at all (older images never see it).
    assert "ASCI_GROUPS" not in identity_kwargs(DEFAULT_ENVIRONMENT, ALICE)["environment"]


def test_the_users_file_pairs_each_group_with_its_gid(tmp_path: Path):
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  - {name: alice, uid: 5001, gid: 5001, groups: [i04, i03, nogid]}\n"
                    "groups: {i03: 7003, i04: 7004, unused: 7005}\n")
    alice = load_users(path)["alice"]
    assert alice.numbered_groups == (("i03", 7003), ("i04", 7004)) and alice.group_ids == (7003, 7004)


def test_more_groups_than_the_desktop_images_take_is_found_before_anything_starts():
    from asci_core.launcher.session_spec import MAX_IMAGE_GROUPS, identity_problem
    from asci_core.launcher.settings import EnvironmentSettings
    many = Researcher("alice", 5001, 5001, numbered_groups=tuple((f"g{i}", 10000 + i)
                                                                 for i in range(MAX_IMAGE_GROUPS + 1)))
    assert "at most 256 groups" in identity_problem(DEFAULT_ENVIRONMENT, many)
    assert identity_problem(EnvironmentSettings(name="x", image="asci/tiny:latest"), many) is None  # group_add
    assert identity_problem(DEFAULT_ENVIRONMENT, Researcher("alice", 5001, 5001)) is None


def test_one_name_per_gid_goes_to_the_image_and_a_name_with_two_gids_is_refused_before_start():
    from asci_core.launcher.session_spec import groups_variable, identity_problem
    shared = Researcher("alice", 5001, 5001, numbered_groups=(("i03", 7003), ("i03-alias", 7003), ("i04", 7004)))
    assert groups_variable(shared) == "i03:7003,i04:7004" and identity_problem(DEFAULT_ENVIRONMENT, shared) is None
    twice = Researcher("alice", 5001, 5001, numbered_groups=(("i03", 7003), ("i03", 7013)))
    assert identity_problem(DEFAULT_ENVIRONMENT, twice) == "the directory gives group 'i03' two gids (7003 and 7013)"
