"""Real Docker nodes on this machine for the multi-node and Swarm tests (test tooling, not product code).

Each node is its own network namespace with its own `dockerd`, wired by a veth into a
bridge that lives in a private "switch" namespace: the host's interfaces, routes and
firewall are never touched, and nothing in a node has a route beyond the switch. The
engine runs under `nsenter --net` + `unshare --mount --uts` (not `ip netns exec`, which
remounts /sys and loses the cgroup mounts) with a private /etc/docker, so every node
has its own engine ID and hostname.

Everything carries this run's token (namespaces, veths, sockets, cgroup parents, data
directories), so concurrent runs never meet, and teardown stops only what was started
here: the processes inside the run's own namespaces. Addresses: 10.231.0.0/24 on the
switch, 10.232.N.0/24 as node N's docker0, 10.233.N.0/20 for its other networks — all
inside the namespaces, none collides with the shared engine's 172.17/16.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import docker
import docker.errors
import requests.exceptions
from asci_core.stack.docker_engine import docker_client
from tests.support.waiting import wait_until

T = TypeVar("T")
ROOT = Path("/var/tmp/asci-test-nodes")
# The switch's own address, given only by `attach_proxy`: where a proxy on "another machine" sits.
PROXY_ADDRESS = "10.231.0.1"
CLONE_NEWNET = 0x40000000
SUBSYSTEMS = Path("/sys/fs/cgroup")
ENGINE_START_TIMEOUT = 30.0
# The node's dockerd replaces the shell, so the process started here *is* the engine. A TCP
# listener made on this machine's loopback is handed over by socket activation (fd:// is fd 3,
# LISTEN_PID the engine's own pid): the launcher reaches the node over TCP without any route into
# its namespace.
START_ENGINE = """
hostname "$1"
mount --bind "$2" /etc/docker
shift 2
if [ -n "${ASCI_TEST_LISTEN_FD:-}" ]; then
    export LISTEN_PID=$$ LISTEN_FDS=1
    exec dockerd "$@" 3<&"$ASCI_TEST_LISTEN_FD"
fi
exec dockerd "$@"
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class EngineNode:
    name: str          # hostname and node name in the launcher's settings
    netns: str
    address: str       # on the switch
    base: Path
    socket: Path
    cgroup_parent: str
    process: subprocess.Popen | None = None
    stopped: bool = field(default=False)
    listener: socket.socket | None = None  # the engine's TCP listener on this machine's loopback (tls)

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, timeout: float = 60.0) -> docker.DockerClient:
        return docker_client(self.url, timeout=timeout, version="1.41")

    # --- making it stop answering ---------------------------------------

    def freeze(self) -> None:
        """The engine hangs: connections are accepted by the kernel, nothing answers. Sessions keep running.

        Returns once every thread of the engine is stopped. kill() only queues SIGSTOP: the kernel
        hands it to one thread (the main one, by preference), and only when that thread takes it are
        the others told to stop. On a loaded machine that thread may be waiting for a CPU or in an
        uninterruptible disk wait (D) while the engine's other threads go on answering, so a call made
        right after kill() could still be answered: a reconcile then found nothing lost."""
        os.kill(self.process.pid, signal.SIGSTOP)
        self.stopped = True
        wait_until(lambda: all_threads_stopped(self.process.pid), 30, f"every thread of {self.name}'s engine stopped")

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self.stopped = False


class NodeCluster:
    """N real engines in namespaces. Use as a context manager: it always tears down what it started."""

    def __init__(self, count: int, label: str, live_restore: bool = False, swarm_pulls: bool = False,
                 tls: "EngineTls | None" = None):
        """LIVE_RESTORE: containers outlive their engine (what a facility sets on session nodes;
        Swarm mode refuses it). SWARM_PULLS: Swarm tasks pull their image as in production;
        without it they use the node's own copy (DOCKER_SERVICE_PREFER_OFFLINE_IMAGE), since a
        pull of an image from no reachable registry first waits out a DNS timeout (~20 s).
        TLS: each engine also answers over TCP on this machine's loopback (EngineNode.tcp_url),
        verifying clients against TLS's CA, as a remote node does."""
        self.live_restore = live_restore
        self.swarm_pulls = swarm_pulls
        self.tls = tls
        token = uuid.uuid4().hex[:6]
        self.token = token
        self.base = ROOT / f"{label}-{token}"
        self.switch = f"asci-t-{token}-sw"
        self.nodes = [
            EngineNode(name=f"{label}{i}", netns=f"asci-t-{token}-n{i}", address=f"10.231.0.{10 + i}",
                     base=self.base / f"n{i}", socket=Path(f"/run/asci-test-{token}-n{i}.sock"),
                     cgroup_parent=f"/asci-test-{token}-n{i}")
            for i in range(1, count + 1)]
        self._namespaces: list[str] = []
        self.timings: dict[str, float] = {}

    def __enter__(self) -> "NodeCluster":
        try:
            self.start()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def __iter__(self) -> Iterator[EngineNode]:
        return iter(self.nodes)

    # --- start -----------------------------------------------------------

    def start(self) -> None:
        sweep_abandoned()
        began = time.monotonic()
        self.base.mkdir(parents=True, exist_ok=False)
        (self.base / "owner").write_text(str(os.getpid()))
        self._add_namespace(self.switch)
        _ip("-n", self.switch, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, node in enumerate(self.nodes, start=1):
            self._add_namespace(node.netns)
            inside, outside = f"at{self.token}n{i}", f"at{self.token}s{i}"
            _ip("link", "add", inside, "netns", node.netns, "type", "veth", "peer", "name", outside,
                "netns", self.switch)
            _ip("-n", self.switch, "link", "set", outside, "master", "br0", "up")
            _ip("-n", node.netns, "link", "set", "lo", "up")
            _ip("-n", node.netns, "link", "set", inside, "name", "eth0")
            _ip("-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "eth0")
            _ip("-n", node.netns, "link", "set", "eth0", "up")
        self.timings["network"] = time.monotonic() - began
        for i, node in enumerate(self.nodes, start=1):
            self._start_engine(node, i)
        began = time.monotonic()
        for node in self.nodes:
            self.wait_answering(node)
        self.timings["engines"] = time.monotonic() - began

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)

    def _start_engine(self, node: EngineNode, index: int) -> None:
        for part in ("data", "exec", "etc-docker"):
            (node.base / part).mkdir(parents=True, exist_ok=True)
        args = [
            "--data-root", str(node.base / "data"), "--exec-root", str(node.base / "exec"),
            "--pidfile", str(node.base / "dockerd.pid"), "-H", node.url,
            "--iptables=true", "--bip", f"10.232.{index}.1/24",
            "--default-address-pool", f"base=10.233.{index * 16}.0/20,size=24",
            "--cgroup-parent", node.cgroup_parent, "--shutdown-timeout", "2",
            "--log-driver", "json-file",
        ]
        if self.live_restore:
            args.append("--live-restore")
        env = {k: v for k, v in os.environ.items()
               if k not in ("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "ASCI_TEST_LISTEN_FD")}
        if not self.swarm_pulls:
            env["DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"] = "1"
        passed: tuple[int, ...] = ()
        if self.tls is not None:
            if node.listener is None:
                node.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                node.listener.bind(("127.0.0.1", 0))
                node.listener.listen(64)
            args += ["-H", "fd://", "--tlsverify", "--tlscacert", str(self.tls.ca_cert),
                     "--tlscert", str(self.tls.server_cert), "--tlskey", str(self.tls.server_key)]
            env["ASCI_TEST_LISTEN_FD"] = str(node.listener.fileno())
            passed = (node.listener.fileno(),)
        with open(node.base / "dockerd.log", "ab") as log:
            node.process = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{node.netns}", "unshare", "--mount", "--uts", "--propagation", "slave",
                 # bash: dash takes no file descriptor above 9 in a redirection
                 "bash", "-c", START_ENGINE, "bash", node.name, str(node.base / "etc-docker"), *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                pass_fds=passed)

    def wait_answering(self, node: EngineNode, timeout: float = ENGINE_START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if node.process.poll() is not None:
                raise RuntimeError(f"engine of {node.name} exited ({node.process.returncode}):\n{self.log_tail(node)}")
            try:
                client = node.client(timeout=2)
                try:
                    client.ping()
                    return
                finally:
                    client.close()
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"engine of {node.name} did not answer in {timeout:g} s:\n"
                                       f"{self.log_tail(node)}") from None
                time.sleep(0.1)

    def restart(self, node: EngineNode) -> None:
        """Start the engine of a node whose engine was killed, on the same data."""
        (node.base / "dockerd.pid").unlink(missing_ok=True)
        node.socket.unlink(missing_ok=True)
        self._start_engine(node, self.nodes.index(node) + 1)
        self.wait_answering(node)

    def kill(self, node: EngineNode, timeout: float = 30.0) -> None:
        """The engine dies (its sessions' containers keep running under their shims).

        Its containerd dies with it, but is reaped by this machine's init only after a
        while; until then a new engine takes the zombie for a running containerd and waits
        for it in vain, so this returns once that process is gone."""
        pidfile = node.base / "exec/containerd/containerd.pid"
        try:
            containerd = int(pidfile.read_text())
        except (OSError, ValueError):
            containerd = None
        node.process.kill()
        node.process.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while containerd is not None and Path(f"/proc/{containerd}").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd of {node.name} (pid {containerd}) did not go")
            time.sleep(0.05)

    def attach_proxy(self) -> str:
        """Give the switch an address of its own, as a proxy machine on the nodes' network would have;
        returns it. Run code there with `on_proxy`."""
        if not getattr(self, "_proxy_attached", False):
            _ip("-n", self.switch, "addr", "add", f"{PROXY_ADDRESS}/24", "dev", "br0")
            self._proxy_attached = True
        return PROXY_ADDRESS

    def on_proxy(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """FN's result, run in a thread that entered the switch's network namespace: sockets it
        opens reach the nodes as the proxy machine would. The test process's own threads stay put."""
        return in_namespace(Path("/run/netns") / self.switch, fn, timeout)

    def form_swarm(self, node_labels: dict[str, dict[str, str]]) -> None:
        """The first node initialises a Swarm, the others join as workers; each node gets the labels
        NODE_LABELS gives its name."""
        began = time.monotonic()
        manager, *workers = self.nodes
        client = manager.client()
        try:
            client.swarm.init(advertise_addr=manager.address, listen_addr=f"{manager.address}:2377",
                              default_addr_pool=["10.234.0.0/16"], subnet_size=24)
            token = client.swarm.attrs["JoinTokens"]["Worker"]
            for worker in workers:
                joining = worker.client()
                try:
                    joining.swarm.join(remote_addrs=[f"{manager.address}:2377"], join_token=token,
                                       advertise_addr=worker.address, listen_addr=f"{worker.address}:2377")
                finally:
                    joining.close()
            wait_until(lambda: len([n for n in client.nodes.list() if n.attrs["Status"]["State"] == "ready"])
                       == len(self.nodes), 30, f"{len(self.nodes)} ready Swarm nodes")
            for node in client.nodes.list():
                spec = dict(node.attrs["Spec"])
                spec["Labels"] = node_labels.get(node.attrs["Description"]["Hostname"], {})
                node.update(spec)
        finally:
            client.close()
        self.timings["swarm"] = time.monotonic() - began

    def load_image(self, source: docker.DockerClient, reference: str) -> None:
        """Copy REFERENCE from SOURCE into every node (docker save | docker load)."""
        began = time.monotonic()
        archive = b"".join(source.images.get(reference).save(named=True))
        for node in self.nodes:
            client = node.client()
            try:
                client.images.load(archive)
            finally:
                client.close()
        self.timings[f"load {reference}"] = time.monotonic() - began

    def log_tail(self, node: EngineNode, lines: int = 20) -> str:
        try:
            return "\n".join((node.base / "dockerd.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- teardown --------------------------------------------------------

    def teardown(self) -> None:
        """Stop everything started in this run's namespaces, then remove them and the data. Never raises."""
        began = time.monotonic()
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                try:
                    node.process.send_signal(signal.SIGCONT)
                    node.process.terminate()
                except ProcessLookupError:
                    pass
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=10)
        # Whatever is left in our namespaces (containerd, shims, session processes) was started here.
        for name in reversed(self._namespaces):
            _kill_namespace_processes(Path("/run/netns") / name)
        # Session containers have namespaces of their own, and live restore keeps them past their
        # engine: they are found by the node's cgroup parent.
        for node in self.nodes:
            _kill_cgroup_processes(node.cgroup_parent)
        for name in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
        for node in self.nodes:
            node.socket.unlink(missing_ok=True)
            _remove_cgroups(node.cgroup_parent)
            if node.listener is not None:
                node.listener.close()
        _remove_tree(self.base)
        self.timings["teardown"] = time.monotonic() - began


def in_namespace(netns: Path, fn: Callable[[], T], timeout: float = 30.0) -> T:
    """FN's result, run in a new thread that joined the network namespace NETNS (setns affects the
    calling thread alone, and the thread ends with FN)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(netns, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {netns}")
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            os.close(fd)

    thread = threading.Thread(target=run, name=f"netns-{netns.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"nothing came back from {netns.name} within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def read_banner(address: str, port: int, timeout: float = 5.0) -> bytes:
    """The first line a TCP server at ADDRESS:PORT sends (a VNC server: its RFB version)."""
    with socket.create_connection((address, port), timeout=timeout) as conn:
        data = b""
        while not data.endswith(b"\n") and len(data) < 64:
            chunk = conn.recv(64)
            if not chunk:
                break
            data += chunk
        return data


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of PID is stopped (T in /proc/PID/task/TID/stat) or gone."""
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        if state not in ("T", "t", "Z", "X"):  # stopped, or a thread that ended (answers nothing either)
            return False
    return True


def sweep_abandoned() -> None:
    """Remove what a run that was killed before its teardown left behind (its owner process is gone):
    the processes in its namespaces, the namespaces, sockets, cgroups and data. Runs still alive are
    never touched."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout.split()
    for base in ROOT.glob("*-*") if ROOT.is_dir() else ():
        try:
            owner = int((base / "owner").read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{owner}").exists():
            continue
        token = base.name.rsplit("-", 1)[1]
        namespaces = [n for n in listed if n.startswith(f"asci-t-{token}-")]
        for name in namespaces:
            _kill_namespace_processes(Path("/run/netns") / name)
        for name in namespaces:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
        for sock in Path("/run").glob(f"asci-test-{token}-n*.sock"):
            sock.unlink(missing_ok=True)
        for node in base.glob("n*"):
            _kill_cgroup_processes(f"/asci-test-{token}-{node.name}")
            _remove_cgroups(f"/asci-test-{token}-{node.name}")
        _remove_tree(base)
    # A cgroup parent whose run has no directory any more finished its teardown (the directory goes
    # last), so whatever still runs there was left behind.
    live_tokens = {b.name.rsplit("-", 1)[1] for b in ROOT.glob("*-*")} if ROOT.is_dir() else set()
    pids = SUBSYSTEMS / "pids"
    for parent in pids.glob("asci-test-*-n*") if pids.is_dir() else ():
        mine = re.fullmatch(r"asci-test-([0-9a-f]{6})-n\d+", parent.name)
        if mine and mine.group(1) not in live_tokens:
            _kill_cgroup_processes(f"/{parent.name}")
            _remove_cgroups(f"/{parent.name}")


def _namespace_pids(netns: Path) -> list[int]:
    try:
        target = os.stat(netns)
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                st = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                found.append(int(entry))
    return found


def _kill_namespace_processes(netns: Path) -> None:
    deadline = time.monotonic() + 20
    while pids := _namespace_pids(netns):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _cgroup_pids(parent: str) -> list[int]:
    top = SUBSYSTEMS / "pids" / parent.lstrip("/")
    found: list[int] = []
    for procs in top.rglob("cgroup.procs") if top.is_dir() else ():
        try:
            found += [int(line) for line in procs.read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def _kill_cgroup_processes(parent: str) -> None:
    deadline = time.monotonic() + 20
    while pids := _cgroup_pids(parent):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _remove_cgroups(parent: str) -> None:
    for subsystem in SUBSYSTEMS.iterdir() if SUBSYSTEMS.is_dir() else ():
        top = subsystem / parent.lstrip("/")
        if not top.is_dir():
            continue
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                path.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError:
            pass


def _remove_tree(path: Path) -> None:
    # An engine that died may leave mounts behind only in its own (now gone) mount namespace;
    # on the host its data directory is plain files.
    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class EngineTls:
    """A CA, an engine certificate for 127.0.0.1 and a client certificate, all signed by that CA."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, folder: Path) -> "EngineTls":
        import datetime as _dt
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        folder.mkdir(parents=True, exist_ok=True)
        now = _dt.datetime.now(_dt.timezone.utc)

        def issue(subject: str, key, issuer: x509.Name, issuer_key, *extensions) -> x509.Certificate:
            builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                                             subject)]))
                       .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - _dt.timedelta(hours=1)).not_valid_after(now + _dt.timedelta(days=2)))
            for extension, critical in extensions:
                builder = builder.add_extension(extension, critical=critical)
            return builder.sign(issuer_key, hashes.SHA256())

        def write(name: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
            cert_path, key_path = folder / f"{name}.pem", folder / f"{name}-key.pem"
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
            key_path.chmod(0o600)
            return cert_path, key_path

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asci test engine CA")])
        ca = issue("asci test engine CA", ca_key, ca_name, ca_key,
                   (x509.BasicConstraints(ca=True, path_length=0), True))
        server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        server = issue("127.0.0.1", server_key, ca_name, ca_key,
                       (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
                       (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False))
        client = issue("asci launcher", client_key, ca_name, ca_key,
                       (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False))
        ca_path, _ = write("ca", ca, ca_key)
        server_paths, client_paths = write("server", server, server_key), write("client", client, client_key)
        return cls(ca_path, *server_paths, *client_paths)
