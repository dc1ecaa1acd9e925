"""`signalement db migrate`: apply sinks/migrations/NNNN_*.sql in order, once each.

A migration file holds statements that each end with `;` at the end of a line, with `{db}`
standing for the database. Every statement is idempotent (`IF NOT EXISTS`), so a migration
that failed half-way is simply applied again. Applied versions are recorded in
`{db}.schema_migrations` (inserted as data: clickhouse-driver hangs on literal VALUES with 18.16).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from streams.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
DB_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)

log = logging.getLogger("signalement.migrate")


class Executor(Protocol):
    """What migrate() needs of a client: clickhouse_driver.Client fits, a chdb adapter too."""

    def execute(self, query: str, params: Any = None) -> Any: ...


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self, database: str) -> list[str]:
        """The statements of this migration for `database`, comments stripped."""
        text = self.sql.replace("{db}", database)
        out = []
        for chunk in STATEMENT_END.split(text):
            lines = [ln for ln in chunk.splitlines() if ln.strip() and not ln.strip().startswith("--")]
            if lines:
                out.append("\n".join(lines))
        return out


def check_database(database: str) -> str:
    if not DB_RE.match(database):
        raise ValueError(f"database name {database!r} must match {DB_RE.pattern}")
    return database


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file, in version order; versions must be unique."""
    out: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = NAME_RE.match(path.name)
        if not m:
            raise ValueError(f"{path.name}: migration files are named NNNN_name.sql")
        if out and out[-1].version == m.group(1):
            raise ValueError(f"{path.name}: version {m.group(1)} used twice")
        out.append(Migration(m.group(1), m.group(2), path.read_text()))
    return out


def bootstrap_statements(database: str) -> list[str]:
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations (version String, name String, "
        "checksum String, applied_at DateTime('UTC')) ENGINE = ReplacingMergeTree ORDER BY version",
    ]


def applied_versions(client: Executor, database: str) -> set[str]:
    rows = client.execute(f"SELECT DISTINCT version FROM {database}.schema_migrations")
    return {str(r[0]) for r in rows}


def migrate(client: Executor, database: str, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the migrations not applied yet; return the versions applied now."""
    check_database(database)
    for stmt in bootstrap_statements(database):
        client.execute(stmt)
    done = applied_versions(client, database)
    applied = []
    for mig in load_migrations() if migrations is None else migrations:
        if mig.version in done:
            continue
        for stmt in mig.statements(database):
            client.execute(stmt)
        now = datetime.now(UTC).replace(microsecond=0)
        client.execute(f"INSERT INTO {database}.schema_migrations (version, name, checksum, applied_at) VALUES",
                       [(mig.version, mig.name, mig.checksum, now)])
        log.info("applied migration %s_%s to %s", mig.version, mig.name, database)
        applied.append(f"{mig.version}_{mig.name}")
    return applied


def client_for(settings: Settings, database: str = "default", **kwargs: Any) -> Any:
    """A clickhouse-driver Client for the stack's ClickHouse (imported lazily)."""
    from clickhouse_driver import Client

    kwargs.setdefault("connect_timeout", 5)
    kwargs.setdefault("send_receive_timeout", 60)
    return Client(settings.clickhouse_host, port=settings.clickhouse_tcp_port, user=settings.clickhouse_user,
                  password=settings.clickhouse_password, database=database, **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["migrate", "status"], help="apply pending migrations, or list them")
    parser.add_argument("--database", help="database (default: SIGNALEMENT_CLICKHOUSE_DATABASE or signalement)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    database = check_database(args.database or settings.clickhouse_database)
    client = client_for(settings)
    try:
        if args.action == "migrate":
            applied = migrate(client, database)
            print(f"{database}: applied {', '.join(applied)}" if applied else f"{database}: up to date")
            return 0
        for stmt in bootstrap_statements(database):
            client.execute(stmt)
        done = applied_versions(client, database)
        for mig in load_migrations():
            print(f"{mig.version}_{mig.name}: {'applied' if mig.version in done else 'pending'}")
        return 0
    finally:
        client.disconnect()
