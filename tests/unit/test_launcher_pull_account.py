"""The pull account goes only to the facility registry; Swarm desktop services carry no first password."""
from __future__ import annotations

from asci_core.config import Secret
from asci_core.launcher.directory import Researcher
from asci_core.launcher.inventory import Reservation
from asci_core.launcher.pull_account import credentials_for
from asci_core.launcher.settings import DEFAULT_ENVIRONMENT, with_registry
from asci_core.launcher.swarm import service_kwargs
from registry.service import RegistryAccess

FACILITY = RegistryAccess("http://127.0.0.1:5000", "127.0.0.1:5000", "puller", Secret("p-secret", "test"))


def test_the_pull_account_is_sent_for_facility_images_only():
    assert credentials_for("127.0.0.1:5000/bl/desktop-base:1.4", FACILITY) == {"username": "puller",
                                                                                 "password": "p-secret"}
    for elsewhere in ("other.site:5000/bl/desktop-base:1.4", "127.0.0.1:50000/bl/x:1", "127.0.0.1:5000x/y:1",
                      "asci/tiny:latest"):
        assert credentials_for(elsewhere, FACILITY) is None
    assert credentials_for("127.0.0.1:5000/bl/x:1", None) is None


def test_a_desktop_service_has_no_first_password_but_the_users_groups():
    env = with_registry(DEFAULT_ENVIRONMENT, "127.0.0.1:5000")
    alice = Researcher("alice", 5001, 5001, ("i03",), numbered_groups=(("i03", 7003),))
    kwargs = service_kwargs(env, alice, Reservation("0123456789abcdef", "", "alice", env.name, 1.0, 2 ** 30), [],
                            {}, 2)
    spec = kwargs["task_template"]["ContainerSpec"]
    variables = dict(v.split("=", 1) for v in spec["Env"])
    assert "ASCI_VNC_PASSWORD_FILE" not in variables
    assert (variables["ASCI_USER"], variables["ASCI_GROUPS"]) == ("alice", "i03:7003")
    assert "User" not in spec and spec["CapabilityDrop"] == ["ALL"]

