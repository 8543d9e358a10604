"""Starting detached server processes, remembering their PIDs, and stopping exactly those."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could listen on `port` now.

    SO_REUSEADDR, as the JVM's server sockets use: the TIME_WAIT connections a server
    just stopped leaves behind must not make its own port look taken for a minute.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pid_alive(pid: int, marker: str) -> bool:
    """True if `pid` runs and its command line contains `marker`.

    The marker guards against PID reuse: a recycled PID of some other program is not ours.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        if stat.read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return marker in _cmdline(pid)


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def spawn(
    argv: Sequence[str],
    logfile: Path,
    pidfile: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> int:
    """Start `argv` in its own session (it outlives this process) and record its PID."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def stop(pid: int, marker: str, grace_s: float = 20.0) -> bool:
    """Stop our process `pid`: SIGTERM, wait up to `grace_s`, then SIGKILL. True if it ran."""
    if not pid_alive(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not pid_alive(pid, marker):
            _reap(pid)
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while pid_alive(pid, marker):
        time.sleep(0.05)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    # Only our own children can be reaped; others are reaped by init.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    still_running: Callable[[], bool],
    interval_s: float = 0.2,
) -> bool:
    """Poll `condition` until true, the deadline, or the watched process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        if not still_running():
            return False
        time.sleep(interval_s)
    return condition()


def stop_many(targets: Sequence[tuple[int, str]], grace_s: float = 30.0) -> list[int]:
    """Stop several of our processes at once; returns the PIDs that ran.

    The nodes of a KRaft quorum are stopped together: stopped one by one, the last
    ones would wait for a controller quorum that is already gone.
    """
    running = [(pid, marker) for pid, marker in targets if pid_alive(pid, marker)]
    for pid, _ in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(pid_alive(p, m) for p, m in running):
        time.sleep(0.1)
    for pid, marker in running:
        if pid_alive(pid, marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while pid_alive(pid, marker):
            time.sleep(0.05)
        _reap(pid)
    return [pid for pid, _ in running]


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` in MiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0
