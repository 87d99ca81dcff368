"""An SSH server on 127.0.0.1 for the tests that push and pull DVC's cache over `ssh://`: Debian's
openssh-server (`.ci/run` installs it), started in the foreground on a free port with a configuration, a host
key and a user key generated in a scratch folder; nothing under /etc/ssh is read or changed. Clients get a
HOME of their own whose ~/.ssh/known_hosts trusts the host key, as a reviewer's machine would."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def unavailable() -> str | None:
    """Why this machine cannot run the server (a sentence for the skip), or None."""
    missing = [tool for tool in (SSHD, "ssh-keygen") if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install openssh-server; .ci/run installs it)"
    if os.geteuid() != 0:
        return "the test's sshd runs as root (its privilege separation directory is /run/sshd); this user is not root"
    return None


@dataclass
class Server:
    port: int
    user: str
    key: Path  # the private key authorized for `user`
    home: Path  # HOME for clients: .ssh/known_hosts holds the server's host key
    process: subprocess.Popen

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "medsr-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def start(root: Path, timeout: float = 30) -> Server:
    """sshd on a free port of 127.0.0.1, logging in this user with a key generated under `root` only."""
    import getpass

    root.mkdir(parents=True, exist_ok=True)
    host_key, user_key = keygen(root / "host_ed25519"), keygen(root / "user_ed25519")
    authorized = root / "authorized_keys"
    authorized.write_text(Path(f"{user_key}.pub").read_text())
    authorized.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = root / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {root / 'sshd.pid'}
AuthorizedKeysFile {authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = open(root / "sshd.log", "w")
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    home = root / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    algorithm, key = Path(f"{host_key}.pub").read_text().split()[:2]
    (home / ".ssh/known_hosts").write_text(f"[127.0.0.1]:{port} {algorithm} {key}\n")
    server = Server(port=port, user=getpass.getuser(), key=user_key, home=home, process=process)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"sshd did not start:\n{(root / 'sshd.log').read_text()}") from None
            time.sleep(0.2)
