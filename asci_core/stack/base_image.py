"""Base images built locally: nothing here may be pulled from a public hub.

`debian:bookworm` comes from debootstrap against the Debian mirror and
`docker import` (air-gapped facilities need the same path); `asci/tiny` is a
busybox-static image for tests that only need a shell.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import docker.errors

from asci_core.image_reference import name_and_tag
from asci_core.stack.docker_engine import engine_client
from asci_core.stack.part import Part, Probe, Started, StartError

BUSYBOX = Path("/bin/busybox")


class BaseImagePart(Part):
    name = "base_image"
    order = 50
    needs = ("docker",)

    @property
    def settings(self):
        return self.config.stack.base_image

    @property
    def managed(self) -> bool:
        return self.settings.enabled

    @property
    def address(self) -> str:
        return f"{self.settings.name}, {self.settings.tiny_name}"

    @property
    def start_timeout(self) -> float:
        return 10.0

    def _missing(self) -> list[str]:
        with engine_client(self.config, timeout=10) as client:
            missing = []
            for name in (self.settings.name, self.settings.tiny_name):
                try:
                    client.images.get(name)
                except docker.errors.ImageNotFound:
                    missing.append(name)
            return missing

    def probe(self) -> Probe:
        if not self.managed:
            return Probe(True, detail="disabled")
        try:
            missing = self._missing()
        except docker.errors.DockerException as exc:
            return Probe(False, detail=f"engine unavailable ({type(exc).__name__})")
        if missing:
            return Probe(False, detail=f"missing {', '.join(missing)}")
        with engine_client(self.config, timeout=10) as client:
            image_id = client.images.get(self.settings.name).short_id
        return Probe(True, version=image_id)

    def start(self) -> Started:
        built = []
        missing = self._missing()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.settings.tiny_name in missing:
            self._import_tiny()
            built.append(self.settings.tiny_name)
        if self.settings.name in missing:
            self._bootstrap_debian()
            built.append(self.settings.name)
        return Started(kind="artifact", artifacts=built)

    def _import_tiny(self) -> None:
        if not BUSYBOX.exists():
            raise StartError(f"{BUSYBOX} not found (Debian package busybox-static)")
        applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
                tar.addfile(info)
            tar.add(BUSYBOX, arcname="bin/busybox")
            for applet in applets:
                if applet == "busybox":
                    continue
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
            passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
            info = tarfile.TarInfo("etc/passwd")
            info.size = len(passwd)
            tar.addfile(info, io.BytesIO(passwd))
        repo, tag = name_and_tag(self.settings.tiny_name)
        with engine_client(self.config) as client:
            client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=tag,
                                              changes=['CMD ["/bin/sh"]'])

    def _bootstrap_debian(self) -> None:
        s = self.settings
        work = self.state_dir / "base-image"
        rootfs = work / "rootfs"
        tar_path = work / "rootfs.tar"
        if shutil.which("debootstrap") is None:
            raise StartError("debootstrap is not installed (Debian package debootstrap)")
        _clean(rootfs)
        work.mkdir(parents=True, exist_ok=True)
        try:
            self._run(["debootstrap", "--variant=minbase", s.suite, str(rootfs), s.mirror], "debootstrap")
            (rootfs / "etc/apt/sources.list").write_text(
                f"deb {s.mirror} {s.suite} main\n"
                f"deb {s.mirror} {s.suite}-updates main\n"
                f"deb {s.security_mirror} {s.suite}-security main\n")
            # Host files debootstrap copied in, and caches nobody needs in an image.
            for name in ("etc/resolv.conf", "etc/hostname"):
                (rootfs / name).write_text("")
            for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/log/*.log"):
                for leftover in rootfs.glob(pattern):
                    if leftover.is_file() or leftover.is_symlink():
                        leftover.unlink()
            self._run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar_path), "."], "tar")
            repo, tag = name_and_tag(s.name)
            with engine_client(self.config, timeout=600) as client:
                client.api.import_image_from_file(str(tar_path), repository=repo, tag=tag,
                                                  changes=['CMD ["/bin/bash"]', "ENV LANG=C.UTF-8"])
        finally:
            _clean(rootfs)
            tar_path.unlink(missing_ok=True)

    def _run(self, argv: list[str], what: str) -> None:
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"--- {what}: {' '.join(argv)}\n".encode())
            log.flush()
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.write(f"--- {what} exit {result.returncode} after {time.monotonic() - t0:.1f}s\n".encode())
        if result.returncode != 0:
            raise StartError(f"{what} failed with exit code {result.returncode}")


def _clean(rootfs: Path) -> None:
    """Remove a (possibly half-built) rootfs, unmounting anything debootstrap left mounted in it."""
    if not rootfs.exists():
        return
    prefix = str(rootfs.resolve())
    with open("/proc/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix + "/")]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
    shutil.rmtree(rootfs, ignore_errors=True)
