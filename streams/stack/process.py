"""Detached processes with pid files, ports and logs: the plumbing shared by the stack's services.

A pid file only counts when its process is alive and its command line still names our config
file, so a recycled pid never gets a signal from us.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from streams.errors import StackError

console = Console(highlight=False)


def _is_zombie(pid: int) -> bool:
    """A zombie still answers kill(0) but is dead; reap it if it is our child."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return True
    return False


def cmdline(pid: int) -> str:
    """The process's command line, '' if it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True if the pid is a live (non-zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def our_pid(pid_file: Path, marker: str) -> int | None:
    """The pid recorded in pid_file if that process is alive and its command line contains marker."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if alive(pid) and marker in cmdline(pid):
        return pid
    return None


# Runs in a short-lived intermediate process: the server becomes init's child, not ours, so no
# zombie and no "subprocess still running" warning is left in a long-lived caller (pytest).
_LAUNCHER = (
    "import subprocess, sys\n"
    "out = open(sys.argv[1], 'ab')\n"
    "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,"
    " start_new_session=True)\n"
    "print(p.pid)\n"
)


def spawn(argv: Sequence[str], cwd: Path, log_file: Path, pid_file: Path, env: dict[str, str] | None = None) -> int:
    """Start argv detached (own session, output to log_file, parent init) and record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-c", _LAUNCHER, str(log_file), *argv], cwd=cwd,
                            capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode != 0 or not result.stdout.strip().isdigit():
        raise StackError(f"cannot start {argv[0]}: {result.stderr.strip() or result.stdout.strip()}")
    pid = int(result.stdout.strip())
    pid_file.write_text(f"{pid}\n")
    return pid


def _signal(pid: int, sig: int) -> None:
    """Signal the whole process group when pid leads it (we started it with its own session)."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop(pid: int, name: str, timeout: float) -> None:
    """SIGTERM, wait up to timeout, then SIGKILL; returns once the process is gone."""
    console.print(f"  stopping {name} (pid {pid}): SIGTERM, waiting up to {timeout:.0f} s")
    _signal(pid, signal.SIGTERM)
    if wait_for(lambda: not alive(pid), timeout):
        return
    console.print(f"  [yellow]{name} ignored SIGTERM for {timeout:.0f} s: SIGKILL[/]")
    _signal(pid, signal.SIGKILL)
    if not wait_for(lambda: not alive(pid), 10):
        raise StackError(f"{name} (pid {pid}) survived SIGKILL")


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll check() until it is true or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if we could listen on host:port (what the server will try)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(exclude: set[int]) -> int:
    """A free port below the kernel's ephemeral range, not in exclude.

    Not one the kernel picks (bind to 0): those come from the ephemeral range, where a client's
    outgoing connection can take the port while our server is down for a restart.
    """
    low = ephemeral_low()
    start = 10_000 if low > 11_000 else 1_024
    rnd = random.Random()
    for _ in range(500):
        port = rnd.randrange(start, low)
        if port not in exclude and port_free(port):
            return port
    raise StackError(f"no free TCP port found on 127.0.0.1 between {start} and {low}")


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 256 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def disk_usage(path: Path) -> int:
    """Bytes actually allocated under path (sparse index files count for what they use)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def human(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
