"""The web page's in-memory guards: connect tokens, CSRF tokens of logins, login back-off."""
from __future__ import annotations

import pytest

from asci_core.launcher.directory import Researcher
from asci_core.web.logins import Logins
from asci_core.web.rfb import BrowserSide, HandshakeFailed, vnc_auth_response
from asci_core.web.throttle import LoginBackoff
from asci_core.web.tokens import ConnectTokens, TokenRefused
from tests.support.clock import FakeClock


ALICE = Researcher("alice", 5001, 5001, ("i03",))


def test_a_token_is_single_use_even_after_a_refused_attempt():
    tokens = ConnectTokens(60, FakeClock())
    token = tokens.issue("alice", "0123456789abcdef", "conn")
    assert tokens.take(token, "alice", "0123456789abcdef").connection == "conn"
    with pytest.raises(TokenRefused, match="already used"):
        tokens.take(token, "alice", "0123456789abcdef")
    other = tokens.issue("alice", "0123456789abcdef", "conn")
    with pytest.raises(TokenRefused, match="another user"):
        tokens.take(other, "bob", "0123456789abcdef")
    with pytest.raises(TokenRefused, match="already used"):  # the refused try spent it
        tokens.take(other, "alice", "0123456789abcdef")


def test_a_token_is_bound_to_its_session_and_expires():
    clock = FakeClock()
    tokens = ConnectTokens(60, clock)
    token = tokens.issue("alice", "0123456789abcdef", "conn")
    with pytest.raises(TokenRefused, match="another user or session"):
        tokens.take(token, "alice", "fedcba9876543210")
    late = tokens.issue("alice", "0123456789abcdef", "conn")
    clock.now += 59.9
    fresh = tokens.issue("alice", "0123456789abcdef", "conn")
    clock.now += 0.1
    with pytest.raises(TokenRefused, match="expired"):
        tokens.take(late, "alice", "0123456789abcdef")
    assert tokens.take(fresh, "alice", "0123456789abcdef")
    for bad in (None, "", "x" * 1000, 42):
        with pytest.raises(TokenRefused):
            tokens.take(bad, "alice", "0123456789abcdef")


def test_stopping_a_session_revokes_its_tokens():
    tokens = ConnectTokens(60, FakeClock())
    token = tokens.issue("alice", "0123456789abcdef", "conn")
    kept = tokens.issue("alice", "1123456789abcdef", "conn")
    tokens.revoke_session("0123456789abcdef")
    with pytest.raises(TokenRefused):
        tokens.take(token, "alice", "0123456789abcdef")
    assert tokens.take(kept, "alice", "1123456789abcdef")


def test_grants_never_show_the_connection_in_their_repr():
    tokens = ConnectTokens(60, FakeClock())
    token = tokens.issue("alice", "0123456789abcdef", "the-password-holder")
    assert "the-password-holder" not in repr(tokens.take(token, "alice", "0123456789abcdef"))


def test_csrf_token_belongs_to_its_login_and_logins_expire():
    clock = FakeClock()
    logins = Logins(lifetime=100, idle=10, clock=clock)
    sid, login = logins.open(ALICE, "127.0.0.1")
    other_sid, other = logins.open(ALICE, "127.0.0.1")
    assert len(sid) >= 43 and sid != other_sid and login.csrf != other.csrf
    assert logins.get(sid).csrf_matches(login.csrf)
    assert not login.csrf_matches(other.csrf)
    assert not login.csrf_matches(None) and not login.csrf_matches("")
    clock.now += 9
    assert logins.get(sid) is login  # seen: the idle clock restarts
    clock.now += 9
    assert logins.get(sid) is login
    assert logins.get(other_sid) is None  # idle for 18 s
    clock.now += 11
    assert logins.get(sid) is None
    assert logins.get(None) is None and logins.get("x" * 500) is None


def test_logout_ends_the_login():
    logins = Logins(100, 100, FakeClock())
    sid, _ = logins.open(ALICE, "127.0.0.1")
    logins.close(sid)
    assert logins.get(sid) is None


def test_backoff_doubles_caps_and_lets_the_right_user_back_in():
    clock = FakeClock()
    throttle = LoginBackoff(allowance=5, first_delay=1.0, max_delay=60.0, clock=clock)
    for _ in range(4):
        throttle.failed("alice", "10.0.0.1")
        assert throttle.wait_for("alice", "10.0.0.1") == 0
    throttle.failed("alice", "10.0.0.1")
    assert throttle.wait_for("alice", "10.0.0.1") == pytest.approx(1.0)
    assert throttle.wait_for("alice", "10.0.0.2") == pytest.approx(1.0)  # per account, from anywhere
    assert throttle.wait_for("bob", "10.0.0.2") == 0
    clock.now += 1.0
    throttle.failed("alice", "10.0.0.1")
    assert throttle.wait_for("alice", "10.0.0.3") == pytest.approx(2.0)
    for _ in range(50):
        clock.now += throttle.wait_for("alice", "10.0.0.3")
        throttle.failed("alice", "10.0.0.3")
    assert throttle.wait_for("alice", "10.0.0.4") == pytest.approx(60.0)  # capped, never permanent
    clock.now += 60.0
    assert throttle.wait_for("alice", "10.0.0.4") == 0
    throttle.succeeded("alice")
    throttle.failed("alice", "10.0.0.4")
    assert throttle.wait_for("alice", "10.0.0.4") == 0  # the count started over


def test_one_address_guessing_many_names_is_throttled():
    throttle = LoginBackoff(allowance=5, first_delay=1.0, max_delay=60.0, clock=FakeClock())
    for i in range(5 * LoginBackoff.ADDRESS_FACTOR):
        throttle.failed(f"user{i}", "10.0.0.9")
    assert throttle.wait_for("someone-new", "10.0.0.9") > 0
    assert throttle.wait_for("someone-new", "10.0.0.8") == 0


def test_vnc_auth_matches_the_rfb_reference_bit_order():
    # The real check is the proxy test logging in to a real Xvnc; here: deterministic, 8 characters, 16 bytes.
    challenge = bytes(range(16))
    first = vnc_auth_response("password", challenge)
    assert len(first) == 16
    assert vnc_auth_response("password", challenge) == first
    assert vnc_auth_response("passwordLONGER", challenge) == first  # only 8 characters count
    assert vnc_auth_response("passwore", challenge) != first


def test_browser_side_offers_none_and_hands_over_the_rest():
    side = BrowserSide()
    assert side.greeting() == b"RFB 003.008\n"
    assert side.feed(b"RFB 003.0") == (b"", b"", False)
    reply, rest, done = side.feed(b"08\n\x01\x01")  # version, security None, ClientInit (shared)
    assert reply == b"\x01\x01" + b"\x00\x00\x00\x00" and rest == b"\x01" and done
    with pytest.raises(HandshakeFailed):
        BrowserSide().feed(b"RFB 003.003\n")
    with pytest.raises(HandshakeFailed):
        BrowserSide().feed(b"RFB 003.008\n\x02")
