"""Writing the session's VNC password file, shared by the entry point and asci-set-vnc-password.

Call it as the session user, never as root: the file lives in the researcher's home.
"""
import os
import subprocess
import tempfile


class PasswordError(Exception):
    def __init__(self, code: int, message: str):
        self.code = code
        super().__init__(message)


def check_password(raw: bytes) -> bytes:
    """One non-empty line of printable characters (a trailing newline is dropped)."""
    password = raw.rstrip(b"\r\n")
    if not password or len(password) > 1024 or any(c < 0x20 or c == 0x7F for c in password):
        raise PasswordError(64, "the password must be one non-empty line of printable characters (at most 1024)")
    return password


def write_password_file(target: str, password: bytes) -> None:
    """vncpasswd -f into a temporary file beside TARGET, mode 0600, renamed over it: never half-written."""
    folder = os.path.dirname(target)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".passwd-")
    except OSError as exc:
        raise PasswordError(70, f"cannot write in {folder}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            done = subprocess.run(["vncpasswd", "-f"], input=password + b"\n", stdout=out,
                                  stderr=subprocess.DEVNULL)
            out.flush()
            os.fsync(out.fileno())
        if done.returncode != 0 or os.path.getsize(temp) != 8:
            raise PasswordError(70, "vncpasswd -f did not produce a password file")
        os.chmod(temp, 0o600)
        os.replace(temp, target)
        temp = None
    except OSError as exc:
        raise PasswordError(70, f"cannot replace {target}: {exc.strerror}") from None
    finally:
        if temp is not None and os.path.exists(temp):
            os.unlink(temp)
