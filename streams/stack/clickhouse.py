"""ClickHouse server from the distribution's package (Debian ships 18.16), installed on demand.

Health is HTTP /ping, then a real native-protocol query with clickhouse_driver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from clickhouse_driver import Client

from streams.errors import StackError
from streams.security import clickhouse_users
from streams.stack.process import console
from streams.stack.service import Check, Service, render

PACKAGES = ["clickhouse-server", "clickhouse-client"]


def server_binary() -> str | None:
    """clickhouse-server on PATH or in /usr/sbin (root's PATH may lack it)."""
    found = shutil.which("clickhouse-server")
    if found:
        return found
    return "/usr/sbin/clickhouse-server" if os.access("/usr/sbin/clickhouse-server", os.X_OK) else None


def install() -> str:
    """apt-get install the server and client; return the server binary."""
    if os.geteuid() != 0:
        raise StackError("clickhouse-server is not installed and installing it needs root: "
                         f"sudo apt-get install -y {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    started = time.monotonic()
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
        console.print(f"  clickhouse-server missing: running {' '.join(argv)}")
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            out = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise StackError(f"{' '.join(argv)} failed (exit {result.returncode}):\n{out}")
    binary = server_binary()
    if binary is None:
        raise StackError(f"apt-get installed {' '.join(PACKAGES)} but clickhouse-server is still not found")
    console.print(f"  installed ClickHouse in {time.monotonic() - started:.1f} s")
    return binary


class ClickHouse(Service):
    name = "ClickHouse"
    stop_timeout = 30.0

    @property
    def dir(self) -> Path:
        return self.settings.home / "clickhouse"

    @property
    def config_file(self) -> Path:
        return self.dir / "config.xml"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "clickhouse-server.log"

    def ports(self) -> dict[str, int]:
        return {"tcp": self.settings.clickhouse_tcp_port, "http": self.settings.clickhouse_http_port}

    def prepare(self) -> None:
        """Install if needed, write config.xml and users.xml."""
        if server_binary() is None:
            install()
        for sub in ("data", "tmp", "user_files", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        users = self.write_users()
        render("clickhouse-config.xml", self.config_file, log_file=self.log_file,
               error_log=self.dir / "logs" / "clickhouse-server.err.log",
               tcp_port=self.settings.clickhouse_tcp_port, http_port=self.settings.clickhouse_http_port,
               data_dir=self.data_dir, tmp_dir=self.dir / "tmp", user_files_dir=self.dir / "user_files",
               users_file=users)

    def write_users(self) -> Path:
        """users.xml with the analyst and sink users (a running server re-reads it by itself)."""
        users = self.dir / "users.xml"
        hashes = clickhouse_users(self.settings)
        render("clickhouse-users.xml", users, analyst_sha256=hashes["analyst"], sink_sha256=hashes["sink"])
        return users

    def command(self) -> list[str]:
        return [server_binary() or "clickhouse-server", f"--config-file={self.config_file}"]

    def checks(self) -> list[Check]:
        http = self.settings.clickhouse_http_port
        return [(f"HTTP /ping on port {http}", self._ping),
                (f"SELECT version() on port {self.settings.clickhouse_tcp_port}", lambda: self.query_version() != "")]

    def _ping(self) -> bool:
        url = f"http://{self.settings.clickhouse_host}:{self.settings.clickhouse_http_port}/ping"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError as exc:
            self.last_error = f"/ping: {exc}"
            return False

    def client(self, database: str = "default", **kw: object) -> Client:
        """A clickhouse_driver.Client to this server."""
        s = self.settings
        return Client(host=s.clickhouse_host, port=s.clickhouse_tcp_port, user=s.clickhouse_user,
                      password=s.clickhouse_password, database=database, connect_timeout=3,
                      send_receive_timeout=10, **kw)

    def query_version(self) -> str:
        """SELECT version(), '' if the server does not answer."""
        try:
            client = self.client()
            try:
                rows = client.execute("SELECT version()")
            finally:
                client.disconnect()
        except Exception as exc:  # driver raises its own error types and socket errors
            self.last_error = f"SELECT version(): {type(exc).__name__}: {exc}"
            return ""
        self.last_error = ""
        return str(rows[0][0])

    def version(self) -> str:
        """The running server's version, else what the installed binary says."""
        running = self.query_version() if self.pid() is not None else ""
        if running:
            return running
        binary = server_binary()
        if binary is None:
            return "not installed"
        result = subprocess.run([binary, "--version"], capture_output=True, text=True)
        words = (result.stdout + result.stderr).split()
        return next((w for w in words if w[:1].isdigit()), "?")
