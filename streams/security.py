"""Who may do what on the secure broker: SCRAM users, ACLs, and the passwords they use.

Kafka principals (SCRAM-SHA-512 users; `User:<name>`):

| principal | may |
|---|---|
| `admin` | everything (super user; creates the others) |
| `reporter-<id>` | write and describe its own `reports.<id>` and `reports.<id>.urgent`, nothing else |
| `operator-<id>` | read its three lanes with its group `operator-<id>`; write its own `operator.<id>.decisions` |
| `pipeline` | read reports and decisions; write the lanes; read and write its own topics, group, |
| | changelogs and transactional ids (prefix `<app_id>`); create topics |
| `sink` | read the topics the ClickHouse sink reads, with its group `<app_id>-sink` |

ClickHouse users (users.xml, sha256 of the password): `analyst` (profile `readonly`, SELECT only)
and `sink` (writes the tables and runs the migrations); `default` stays, reachable from 127.0.0.1.

Passwords: `SIGNALEMENT_<NAME>_PASSWORD` (the name upper-cased, `-` and `.` as `_`, e.g.
`SIGNALEMENT_REPORTER_PHAROS_PASSWORD`, `SIGNALEMENT_CLICKHOUSE_ANALYST_PASSWORD`), else the
entry in `<secrets_dir>/credentials.json` (mode 0600, generated on first use; secrets_dir is
`<home>/secrets`, git-ignored, or SIGNALEMENT_SECRETS_DIR anywhere outside the checkout).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from streams.config import PREFIX, SASL_MECHANISM, Settings
from streams.errors import StackError
from streams.registry import Registry
from streams.topics import LANE_OF_PRIORITY, Topics

ADMIN = "admin"
CLICKHOUSE_USERS = ("analyst", "sink")  # entries "clickhouse-analyst", "clickhouse-sink" in the secrets file
SCRAM_ITERATIONS = 8192
TIMEOUT = 30.0


@dataclass(frozen=True)
class Principal:
    """One Kafka user: its name (`User:<name>`), its role and the reporter or operator id it stands for."""

    name: str
    role: str  # admin, reporter, operator, pipeline, sink
    id: str = ""

    @property
    def principal(self) -> str:
        return f"User:{self.name}"


def principals(registry: Registry) -> list[Principal]:
    """Every Kafka user of the platform, admin first."""
    return [Principal(ADMIN, "admin"), Principal("pipeline", "pipeline"), Principal("sink", "sink"),
            *(Principal(f"reporter-{r}", "reporter", r) for r in sorted(registry.reporters)),
            *(Principal(f"operator-{o}", "operator", o) for o in sorted(registry.operators))]


def operator_group(topics: Topics, operator_id: str) -> str:
    """The consumer group an operator reads its lanes with (clients.operator's default)."""
    return f"{topics.prefix}operator-{operator_id}"


def sink_group(app_id: str) -> str:
    return f"{app_id}-sink"


# ---- ACLs ----

Rule = tuple[str, str, str, str, tuple[str, ...]]  # (principal, resource type, pattern type, name, operations)


def rules(registry: Registry, topics: Topics, app_id: str) -> list[Rule]:
    """The ACLs as plain tuples (no confluent types: readable, and testable without a broker)."""
    lanes = {o: [topics.lane(o, p) for p in LANE_OF_PRIORITY] for o in registry.operators}
    out: list[Rule] = []
    for r in sorted(registry.reporters):
        out += [(f"User:reporter-{r}", "TOPIC", "LITERAL", name, ("WRITE", "DESCRIBE"))
                for name in (topics.reports(r), topics.reports_urgent(r))]
    for o in sorted(registry.operators):
        user = f"User:operator-{o}"
        out += [(user, "TOPIC", "LITERAL", lane, ("READ", "DESCRIBE")) for lane in lanes[o]]
        out.append((user, "GROUP", "LITERAL", operator_group(topics, o), ("READ", "DESCRIBE")))
        out.append((user, "TOPIC", "LITERAL", topics.decisions(o), ("WRITE", "DESCRIBE")))
    pipe, rw = "User:pipeline", ("READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS")
    out.append((pipe, "TOPIC", "PREFIXED", topics.reports(""), ("READ", "DESCRIBE", "DESCRIBE_CONFIGS")))
    for o in sorted(registry.operators):
        out.append((pipe, "TOPIC", "LITERAL", topics.decisions(o), ("READ", "DESCRIBE", "DESCRIBE_CONFIGS")))
        out += [(pipe, "TOPIC", "LITERAL", lane, ("WRITE", "DESCRIBE", "DESCRIBE_CONFIGS")) for lane in lanes[o]]
    out += [(pipe, "TOPIC", "PREFIXED", f"{topics.prefix}referrals.", rw),
            (pipe, "TOPIC", "LITERAL", topics.reactions, rw),
            (pipe, "TOPIC", "LITERAL", topics.windows, rw),
            (pipe, "TOPIC", "PREFIXED", f"{topics.prefix}signalement.internal.", rw),
            (pipe, "TOPIC", "PREFIXED", app_id, ("ALL",)),  # Faust's changelogs and leader topic
            (pipe, "GROUP", "PREFIXED", app_id, ("READ", "DESCRIBE")),
            (pipe, "TRANSACTIONAL_ID", "PREFIXED", app_id, ("WRITE", "DESCRIBE")),
            (pipe, "CLUSTER", "LITERAL", "kafka-cluster", ("CREATE", "IDEMPOTENT_WRITE"))]
    sink = "User:sink"
    for name in (topics.accepted, topics.unroutable, topics.duplicates, topics.rejected, topics.overdue,
                 topics.reactions, topics.windows, *(topics.decisions(o) for o in sorted(registry.operators))):
        out.append((sink, "TOPIC", "LITERAL", name, ("READ", "DESCRIBE")))
    out.append((sink, "GROUP", "LITERAL", sink_group(app_id), ("READ", "DESCRIBE")))
    return out


def acl_bindings(registry: Registry, topics: Topics, app_id: str = "signalement") -> list[Any]:
    """The rules as confluent-kafka AclBindings (ALLOW, any host), one per operation."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    kind = {"CLUSTER": ResourceType.BROKER}  # librdkafka's name for Kafka's CLUSTER resource
    return [AclBinding(kind.get(rtype) or ResourceType[rtype], name, ResourcePatternType[ptype], principal, "*",
                       AclOperation[op], AclPermissionType.ALLOW)
            for principal, rtype, ptype, name, ops in rules(registry, topics, app_id) for op in ops]


# ---- passwords ----

def env_name(name: str) -> str:
    """'reporter-tj-paris' -> 'SIGNALEMENT_REPORTER_TJ_PARIS_PASSWORD'."""
    return f"{PREFIX}{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_PASSWORD"


def secrets_file(settings: Settings) -> Path:
    return settings.secrets_dir / "credentials.json"


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    settings.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(settings.secrets_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StackError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise StackError(f"{path}: expected a JSON object of name -> password")
    return {str(k): str(v) for k, v in data.items()}


def stored_password(settings: Settings, name: str) -> str:
    """The password of `name` from the environment or the secrets file; '' if neither has it (never generates)."""
    return os.environ.get(env_name(name)) or _read(secrets_file(settings)).get(name, "")


def ensure_passwords(settings: Settings, names: list[str]) -> dict[str, str]:
    """name -> password for each name; generates and stores (0600) those neither env nor file has."""
    with _locked(settings):
        path = secrets_file(settings)
        stored = _read(path)
        missing = [n for n in names if n not in stored and env_name(n) not in os.environ]
        if missing:
            stored.update({n: secrets.token_urlsafe(24) for n in missing})
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(stored, fh, indent=2, sort_keys=True)
            os.replace(tmp, path)
    return {n: os.environ.get(env_name(n)) or stored[n] for n in names}


def as_user(settings: Settings, user: str, bootstrap: str | None = None) -> Settings:
    """Settings whose Kafka clients reach the secure broker (or `bootstrap`) as `user`."""
    return replace(settings, bootstrap=bootstrap or settings.secure_bootstrap, kafka_user=user,
                   kafka_password=ensure_passwords(settings, [user])[user])


def sha256_hex(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def clickhouse_users(settings: Settings) -> dict[str, str]:
    """ClickHouse user -> sha256 hex of its password (users.xml keeps no clear text)."""
    pw = ensure_passwords(settings, [f"clickhouse-{u}" for u in CLICKHOUSE_USERS])
    return {u: sha256_hex(pw[f"clickhouse-{u}"]) for u in CLICKHOUSE_USERS}


# ---- applying it to the secure broker ----

def faust_credentials(settings: Settings) -> Any:
    """broker_credentials for faust.App: SCRAM when a Kafka user is set, else None (plaintext)."""
    if not settings.kafka_user:
        return None
    import faust

    return faust.SASLCredentials(username=settings.kafka_user, password=settings.kafka_password,
                                 mechanism=SASL_MECHANISM)


def _result(futures: dict[Any, Any], what: str) -> None:
    from confluent_kafka import KafkaException

    for key, future in futures.items():
        try:
            future.result(TIMEOUT)
        except KafkaException as exc:
            raise StackError(f"cannot {what} {key}: {exc.args[0].str()}") from exc


def apply(settings: Settings, registry: Registry | None = None, bootstrap: str | None = None) -> tuple[int, int]:
    """Create (or update) every SCRAM user and ACL for settings.topic_prefix and app_id, as admin.

    Idempotent: an upsert of a user and a create of an existing ACL change nothing.
    bootstrap: the broker (default: the local secure broker). Returns (users, ACL bindings).
    """
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    registry = registry or Registry.load(settings.reporters_path, settings.operators_path)
    users = [p.name for p in principals(registry) if p.name != ADMIN]
    passwords = ensure_passwords(settings, users)
    admin = AdminClient(as_user(settings, ADMIN, bootstrap).confluent(log_level=0))  # type: ignore[arg-type]
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    _result(admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(u, info, passwords[u].encode()) for u in users],
        request_timeout=TIMEOUT), "create the SCRAM user")
    bindings = acl_bindings(registry, Topics(prefix=settings.topic_prefix), settings.app_id)
    _result(admin.create_acls(bindings, request_timeout=TIMEOUT), "create the ACL")
    return len(users), len(bindings)


# ---- `signalement security apply | show` ----

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["apply", "show"],
                        help="apply: create the SCRAM users and ACLs (as admin); show: print the ACL table")
    parser.add_argument("--bootstrap", default=None,
                        help="the secure broker (default: SIGNALEMENT_BOOTSTRAP if set, else the local secure broker)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(highlight=False)
    settings = Settings.from_env()
    registry = Registry.load(settings.reporters_path, settings.operators_path)
    if args.action == "show":
        for principal, rtype, ptype, name, ops in rules(registry, Topics(prefix=settings.topic_prefix), settings.app_id):
            console.print(f"{principal:28} {rtype:16} {ptype:8} {name:45} {','.join(ops)}", markup=False,
                          soft_wrap=True)
        return 0
    bootstrap = args.bootstrap or (settings.bootstrap if PREFIX + "BOOTSTRAP" in os.environ else None)
    try:
        users, acls = apply(settings, registry, bootstrap)
    except StackError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 1
    console.print(f"[green]{users} SCRAM users, {acls} ACL bindings[/] on {bootstrap or settings.secure_bootstrap} "
                  f"(passwords: env SIGNALEMENT_<NAME>_PASSWORD or {secrets_file(settings)})")
    return 0
