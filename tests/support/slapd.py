"""A real OpenLDAP `slapd` for tests: its own cn=config, a few posix users and groups, on loopback.

Built from Debian's slapd 2.5 with `slapadd -n0` (config) and `slapadd -n1`
(data); run as the openldap user on a free port; stopped and removed at the end.
"""
from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import wait_listening

SUFFIX = "dc=asci,dc=test"
ADMIN_DN = f"cn=admin,{SUFFIX}"
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")


@dataclass(frozen=True)
class LdapUser:
    name: str
    uid: int
    gid: int
    password: str
    groups: tuple[str, ...] = ()
    common_name: str = ""


@dataclass
class Slapd:
    url: str
    admin_dn: str
    admin_password: str
    users: dict[str, LdapUser]
    people: str = f"ou=people,{SUFFIX}"
    groups: str = f"ou=groups,{SUFFIX}"
    process: subprocess.Popen | None = field(default=None, repr=False)
    directory: Path | None = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def _config_ldif(db_dir: Path, admin_password: str) -> str:
    schema = "\n".join(Path(f"/etc/ldap/schema/{name}.ldif").read_text() for name in SCHEMAS)
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schema}

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcDbDirectory: {db_dir}
olcRootDN: {ADMIN_DN}
olcRootPW: {ssha(admin_password)}
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcDbIndex: memberUid eq
olcDbMaxSize: 104857600
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by * read
"""


def _data_ldif(users: list[LdapUser]) -> str:
    parts = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: asci\no: ASCI tests\n",
             f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
             f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n"]
    for u in users:
        parts.append(f"dn: uid={u.name},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
                     f"uid: {u.name}\ncn: {u.common_name or u.name}\nsn: {u.name}\nuidNumber: {u.uid}\n"
                     f"gidNumber: {u.gid}\nhomeDirectory: /home/{u.name}\nuserPassword: {ssha(u.password)}\n")
    members: dict[str, list[LdapUser]] = {}
    for u in users:
        for g in u.groups:
            members.setdefault(g, []).append(u)
    for number, (group, who) in enumerate(sorted(members.items())):
        lines = "".join(f"memberUid: {u.name}\n" for u in who)
        parts.append(f"dn: cn={group},ou=groups,{SUFFIX}\nobjectClass: posixGroup\ncn: {group}\n"
                     f"gidNumber: {7000 + number}\n{lines}")
    return "\n".join(parts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_slapd(users: list[LdapUser], timeout: float = 20.0) -> Slapd:
    """A running slapd with USERS (and their groups as posixGroups), in a directory of its own.

    The directory is made directly under /tmp: slapd runs as openldap, which cannot enter
    pytest's 0700 temporary directories."""
    import tempfile
    workdir = Path(tempfile.mkdtemp(prefix="asci-slapd-", dir="/tmp"))
    config_dir, db_dir = workdir / "slapd.d", workdir / "db"
    config_dir.mkdir(parents=True)
    db_dir.mkdir()
    admin_password = secrets.token_urlsafe(12)
    (workdir / "config.ldif").write_text(_config_ldif(db_dir, admin_password))
    (workdir / "data.ldif").write_text(_data_ldif(users))
    for number, ldif in (("0", "config.ldif"), ("1", "data.ldif")):
        subprocess.run(["slapadd", "-n", number, "-F", str(config_dir), "-l", str(workdir / ldif)],
                       check=True, capture_output=True, timeout=60)
    os.chmod(workdir, 0o755)
    for root, dirs, files in os.walk(workdir):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), "openldap", "openldap")
    shutil.chown(workdir, "openldap", "openldap")
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}/"
    # -d 0: stay in the foreground (a child we own and stop), quiet.
    process = subprocess.Popen(["slapd", "-d", "0", "-h", url, "-F", str(config_dir), "-u", "openldap",
                                "-g", "openldap"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Slapd(url.rstrip("/"), ADMIN_DN, admin_password, {u.name: u for u in users}, process=process,
                   directory=workdir)
    wait_listening(process, port, "slapd", timeout, on_failure=server.stop)
    return server
