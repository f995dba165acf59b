"""Login to the web page: local users (bcrypt) and a real slapd, CSRF, throttling, bad input."""
from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest
import requests

from asci_core.launcher.directory import UnknownUser
from asci_core.web.ldap_directory import LdapDirectory
from asci_core.web.settings import LdapSettings
from tests.conftest import LABELS
from tests.integration.web_support import EVIL_TITLE, PASSWORDS, logged_in, web_state
from tests.support.web_app import ServedApp

pytestmark = pytest.mark.integration
GENERIC = {"error": "wrong user name or password"}
STATIC = Path(__file__).resolve().parents[2] / "asci_core/web/static"


@pytest.fixture
def served(stack, tmp_path, unique):
    state = web_state(tmp_path, str(stack.config.stack.docker.socket), {**LABELS, "asci.test.case": unique()})
    with ServedApp(state) as app:
        yield app
    state.launcher.close()


def web_records(caplog, message):
    return [r for r in caplog.records if r.name == "asci.web" and r.getMessage() == message]


def test_local_login_sets_a_strict_httponly_cookie_and_logs(served, caplog):
    caplog.set_level(logging.INFO)
    answer = requests.post(f"{served.url}/web/login", json={"user": "alice", "password": PASSWORDS["alice"]},
                           timeout=30)
    assert answer.status_code == 200 and answer.json()["user"] == "alice"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    session_id = answer.cookies["asci_session"]
    assert len(session_id) >= 43
    [entry] = web_records(caplog, "login")
    assert entry.fields["user"] == "alice" and entry.fields["client"] == "127.0.0.1"
    assert PASSWORDS["alice"] not in caplog.text and session_id not in caplog.text

    page = requests.get(served.url + "/", cookies={"asci_session": session_id}, timeout=30)
    assert page.status_code == 200 and answer.json()["csrf"] in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert requests.get(served.url + "/", allow_redirects=False, timeout=30).headers["Location"] == "/login"


def test_wrong_password_and_unknown_user_get_the_same_answer(served, caplog):
    caplog.set_level(logging.INFO)
    wrong = requests.post(f"{served.url}/web/login", json={"user": "alice", "password": "nope"}, timeout=30)
    unknown = requests.post(f"{served.url}/web/login", json={"user": "zed", "password": "nope"}, timeout=30)
    empty = requests.post(f"{served.url}/web/login", json={"user": "alice", "password": ""}, timeout=30)
    for answer in (wrong, unknown, empty):
        assert (answer.status_code, answer.json()) == (401, GENERIC)
    failed = web_records(caplog, "login failed")
    assert [(r.fields["user"], r.fields["client"]) for r in failed] == [("alice", "127.0.0.1"), ("zed", "127.0.0.1"),
                                                                      ("alice", "127.0.0.1")]
    assert "nope" not in caplog.text


def test_fifty_wrong_passwords_are_throttled_and_the_right_one_works_after_the_backoff(served):
    statuses = []
    for _ in range(50):
        answer = requests.post(f"{served.url}/web/login", json={"user": "bob", "password": "guess"}, timeout=30)
        statuses.append(answer.status_code)
        assert answer.status_code in (401, 429)
        if answer.status_code == 401:
            assert answer.json() == GENERIC
        else:
            assert "too many attempts" in answer.json()["error"] and int(answer.headers["Retry-After"]) >= 1
    assert statuses[:5] == [401] * 5 and 429 in statuses
    # During the back-off even the right password is not heard; once it passes, it works.
    right = {"user": "bob", "password": PASSWORDS["bob"]}
    assert requests.post(f"{served.url}/web/login", json=right, timeout=30).status_code == 429
    deadline = time.monotonic() + 5
    while True:
        answer = requests.post(f"{served.url}/web/login", json=right, timeout=30)
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert answer.status_code == 200
    # Another account from another client was never held up by bob's lock.
    assert served.state.throttle.wait_for("alice", "10.1.1.1") == 0


def test_state_changing_requests_need_the_csrf_token_and_the_origin(served):
    browser, csrf = logged_in(served.url, "alice")
    url = f"{served.url}/web/api/sessions"
    assert browser.post(url, json={"environment": "tiny"}, timeout=30).status_code == 403
    assert browser.post(url, json={"environment": "tiny"}, headers={"X-CSRF-Token": "x" * 43}, timeout=30).status_code == 403
    stop = browser.delete(f"{url}/0123456789abcdef", timeout=30)
    assert (stop.status_code, stop.json()) == (403, {"error": "missing or wrong CSRF token; reload the page"})
    evil = browser.post(f"{served.url}/web/logout", headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
                        timeout=30)
    assert evil.status_code == 403
    cross_login = requests.post(f"{served.url}/web/login", json={"user": "alice", "password": PASSWORDS["alice"]},
                                headers={"Origin": "http://evil.example"}, timeout=30)
    assert cross_login.status_code == 403 and "asci_session" not in cross_login.cookies
    # A token of another login does not fit this one.
    _, other_csrf = logged_in(served.url, "bob")
    assert browser.post(f"{served.url}/web/logout", headers={"X-CSRF-Token": other_csrf}, timeout=30).status_code == 403
    assert browser.get(f"{served.url}/web/api/overview", timeout=30).status_code == 200
    # Logout with the right token ends the login.
    out = browser.post(f"{served.url}/web/logout", headers={"X-CSRF-Token": csrf, "Origin": served.url}, timeout=30)
    assert out.status_code == 200
    assert browser.get(f"{served.url}/web/api/overview", timeout=30).status_code == 401


def test_oversized_and_malformed_bodies_are_refused(served):
    login = f"{served.url}/web/login"
    big = requests.post(login, data=b'{"user": "' + b"a" * 10_000 + b'"}', timeout=30,
                        headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    chunked = requests.post(login, data=iter([b'{"user":"', b"a" * 9000, b'"}']), timeout=30)
    assert chunked.status_code == 413
    for body in (b"not json", b"[1,2]", b"\xff\xfe", b'{"user": 1, "password": []}', b""):
        answer = requests.post(login, data=body, timeout=30)
        assert answer.status_code == 400, body
    browser, csrf = logged_in(served.url, "alice")
    create = browser.post(f"{served.url}/web/api/sessions", data=b"{", headers={"X-CSRF-Token": csrf}, timeout=30)
    assert (create.status_code, create.json()) == (400, {"error": "expected a JSON object"})
    unknown = browser.post(f"{served.url}/web/api/sessions", json={"environment": "../../etc"},
                           headers={"X-CSRF-Token": csrf}, timeout=30)
    assert unknown.status_code == 404 and "no environment named" in unknown.json()["error"]


@pytest.mark.parametrize("session", ["..%2F..%2Fetc%2Fpasswd", "0123456789abcdeg", "0123456789ABCDEF",
                                     "%2e%2e", "0123456789abcdef%00", "0123456789abcdef0"])
def test_path_traversal_in_session_ids_is_refused(served, session):
    browser, csrf = logged_in(served.url, "alice")
    for method, path in (("DELETE", f"/web/api/sessions/{session}"), ("POST", f"/web/api/sessions/{session}/connect")):
        answer = browser.request(method, served.url + path, headers={"X-CSRF-Token": csrf}, timeout=30)
        assert answer.status_code == 404, (method, path, answer.text)
    viewer = browser.get(f"{served.url}/web/viewer/{session}", timeout=30)
    assert viewer.status_code == 404
    assert browser.get(f"{served.url}/web/static/..%2F..%2Fapp.py", timeout=30).status_code in (403, 404)


def test_someone_elses_session_is_not_found(served):
    browser, csrf = logged_in(served.url, "alice")
    answer = browser.post(f"{served.url}/web/api/sessions/0123456789abcdef/connect", headers={"X-CSRF-Token": csrf},
                          timeout=30)
    assert (answer.status_code, answer.json()) == (404, {"error": "no session 0123456789abcdef"})


def test_environment_titles_are_data_never_markup(served):
    browser, _ = logged_in(served.url, "alice")
    overview = browser.get(f"{served.url}/web/api/overview", timeout=30)
    assert overview.headers["Content-Type"].startswith("application/json")
    assert overview.headers["X-Content-Type-Options"] == "nosniff"
    assert overview.json()["environments"][0]["title"] == EVIL_TITLE
    # The page builds the DOM with textContent only: no script writes markup.
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{script.name} uses {sink}"
    # Carol's groups do not include the environment's: she sees none.
    carol, _ = logged_in(served.url, "carol")
    assert carol.get(f"{served.url}/web/api/overview", timeout=30).json()["environments"] == []


def test_static_files_are_cached_for_good_only_under_their_content_digest(served):
    login = requests.get(f"{served.url}/login", timeout=30)
    assert login.headers["Cache-Control"] == "no-store"  # pages carry CSRF tokens: never cached
    # The viewer page names all of noVNC's modules, for the browser to fetch at once.
    browser, _ = logged_in(served.url, "alice")
    viewer_page = browser.get(f"{served.url}/web/viewer/0123456789abcdef", timeout=30)
    assert viewer_page.headers["Cache-Control"] == "no-store"
    preloaded = re.findall(r'<link rel="modulepreload" href="([^"]+)">', viewer_page.text)
    rfb = next(url for url in preloaded if url.endswith("/core/rfb.js"))
    viewer = next(url for url in preloaded if url.endswith("/viewer.js"))
    assert rfb.startswith("/novnc/") and viewer.startswith("/web/assets/") and len(preloaded) > 35
    for url in (rfb, viewer):
        answer = requests.get(served.url + url, timeout=30)
        assert answer.status_code == 200 and answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    for url in ("/novnc/core/rfb.js", "/web/static/viewer.js"):
        answer = requests.get(served.url + url, timeout=30)
        assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-cache"
    assets = viewer.rsplit("/", 1)[0]
    assert requests.get(f"{served.url}{assets}/..%2F..%2Fapp.py", timeout=30).status_code in (403, 404)
    assert requests.get(f"{served.url}/web/assets/000000000000/viewer.js", timeout=30).status_code == 404


def test_server_side_templates_escape_their_values():
    from asci_core.web.app import render

    page = render("index.html", user='<script>alert("x")</script>', csrf='"><b>')
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text and '"><b>' not in page.text


# --- LDAP ------------------------------------------------------------------

@pytest.fixture(params=["template", "search"])
def ldap_settings(request, ldap_server) -> LdapSettings:
    if request.param == "template":
        return LdapSettings(url=ldap_server.url, user_dn_template=f"uid={{user}},{ldap_server.people}",
                            group_base=ldap_server.groups)
    from asci_core.config_base import Secret
    return LdapSettings(url=ldap_server.url, search_base=ldap_server.people, bind_dn=ldap_server.admin_dn,
                        bind_password=Secret(ldap_server.admin_password, "test"), group_base=ldap_server.groups)


def test_ldap_directory_feeds_uid_gid_and_groups(ldap_settings):
    directory = LdapDirectory(ldap_settings)
    lena = directory.authenticate("lena", "lena-pass-1")
    assert (lena.name, lena.uid, lena.gid, lena.groups) == ("lena", 6001, 6001, ("i03",))
    assert directory.lookup("omar").groups == ("i03", "i04")
    assert directory.authenticate("lena", "wrong") is None
    assert directory.authenticate("lena", "") is None  # an empty password would be an anonymous bind
    assert directory.authenticate("nobody-here", "x") is None
    for hostile in ("*", "lena)(uid=*", "lena*", "*)(|(uid=*", "lena,ou=people"):
        assert directory.authenticate(hostile, "lena-pass-1") is None
        with pytest.raises(UnknownUser):
            directory.lookup(hostile)


def test_ldap_posix_groups_bring_their_gids_for_the_sessions(ldap_settings):
    # The test server numbers the posixGroups 7000, 7001, ... in name order.
    omar = LdapDirectory(ldap_settings).lookup("omar")
    assert omar.numbered_groups == (("i03", 7000), ("i04", 7001)) and omar.group_ids == (7000, 7001)


def test_ldap_users_log_in_and_see_their_groups_environments(stack, tmp_path, unique, ldap_server, caplog):
    caplog.set_level(logging.INFO)
    directory = LdapDirectory(LdapSettings(url=ldap_server.url, user_dn_template=f"uid={{user}},{ldap_server.people}",
                                           group_base=ldap_server.groups))
    state = web_state(tmp_path, str(stack.config.stack.docker.socket), {**LABELS, "asci.test.case": unique()},
                      accounts=directory)
    try:
        with ServedApp(state) as app:
            lena, _ = logged_in(app.url, "lena", "lena-pass-1")
            assert [e["name"] for e in lena.get(f"{app.url}/web/api/overview", timeout=30).json()["environments"]] == ["tiny"]
            mark, _ = logged_in(app.url, "mark", "mark-pass-2")
            assert mark.get(f"{app.url}/web/api/overview", timeout=30).json()["environments"] == []
            wrong = requests.post(f"{app.url}/web/login", json={"user": "lena", "password": "mark-pass-2"}, timeout=30)
            assert (wrong.status_code, wrong.json()) == (401, GENERIC)
    finally:
        state.launcher.close()
    assert "lena-pass-1" not in caplog.text and "mark-pass-2" not in caplog.text
    assert [r.fields["user"] for r in web_records(caplog, "login failed")] == ["lena"]


def test_an_ldap_server_that_is_down_gives_a_clear_503(stack, tmp_path, unique):
    from tests.support.web_app import free_port

    directory = LdapDirectory(LdapSettings(url=f"ldap://127.0.0.1:{free_port()}", timeout=2.0,
                                           user_dn_template="uid={user},ou=people,dc=asci,dc=test"))
    state = web_state(tmp_path, str(stack.config.stack.docker.socket), {**LABELS, "asci.test.case": unique()},
                      accounts=directory)
    try:
        with ServedApp(state) as app:
            answer = requests.post(f"{app.url}/web/login", json={"user": "lena", "password": "x"}, timeout=30)
            assert (answer.status_code, answer.json()) == (503, {"error": "the user directory is not answering; try again later"})
    finally:
        state.launcher.close()


def test_the_launchers_refusal_reaches_the_page_as_its_own_words(stack, tmp_path, unique):
    from tests.integration.launcher_support import tiny_environment

    state = web_state(tmp_path, str(stack.config.stack.docker.socket), {**LABELS, "asci.test.case": unique()},
                      environments=[tiny_environment(tmp_path / "fs", name="huge", cpus=64.0)])
    try:
        with ServedApp(state) as app:
            browser, csrf = logged_in(app.url, "alice")
            answer = browser.post(f"{app.url}/web/api/sessions", json={"environment": "huge"},
                                  headers={"X-CSRF-Token": csrf}, timeout=60)
            assert answer.status_code == 503 and answer.json()["error"].startswith("no node can take a session needing 64 CPUs")
            assert browser.get(f"{app.url}/web/api/overview", timeout=30).json()["sessions"] == []
    finally:
        state.launcher.close()


def test_secure_cookies_when_configured_and_the_configured_origin_is_the_one_checked(stack, tmp_path, unique):
    state = web_state(tmp_path, str(stack.config.stack.docker.socket), {**LABELS, "asci.test.case": unique()},
                      secure_cookies=True, origin="https://asci.example.org")
    try:
        with ServedApp(state) as app:
            login = {"user": "alice", "password": PASSWORDS["alice"]}
            own = requests.post(f"{app.url}/web/login", json=login, headers={"Origin": "https://asci.example.org"},
                                timeout=30)
            assert own.status_code == 200 and "Secure" in own.headers["Set-Cookie"]
            served_host = requests.post(f"{app.url}/web/login", json=login, headers={"Origin": app.url}, timeout=30)
            assert served_host.status_code == 403
    finally:
        state.launcher.close()
