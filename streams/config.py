"""Settings, read from the environment (SIGNALEMENT_*) and nowhere else.

Precedence: an environment variable, then the ports the local stack recorded when it
started (`<home>/ports.json`, written by `signalement stack up`), then the defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "SIGNALEMENT_"

# Below Linux's ephemeral range (32768-60999): a server port inside it can be taken, while the
# server restarts, by a client's outgoing connection (even a TCP self-connect to that very port).
DEFAULT_PORTS = {
    "kafka_port": 19092,
    "controller_port": 19093,
    "clickhouse_tcp_port": 19000,
    "clickhouse_http_port": 18123,
    "secure_kafka_port": 19094,  # the SASL/SCRAM broker with ACLs (`signalement stack up --secure`)
    "secure_controller_port": 19095,
}
SASL_MECHANISM = "SCRAM-SHA-512"


# fields whose variable is not simply the upper-cased field name
ALIASES = {"policy_path": "POLICY", "reporters_path": "REPORTERS", "operators_path": "OPERATORS"}


def _env(name: str, default: str) -> str:
    return os.environ.get(PREFIX + name.upper(), default)


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Build with `Settings.from_env()`."""

    home: Path = ROOT / ".stack"
    kafka_port: int = DEFAULT_PORTS["kafka_port"]
    controller_port: int = DEFAULT_PORTS["controller_port"]
    clickhouse_tcp_port: int = DEFAULT_PORTS["clickhouse_tcp_port"]
    clickhouse_http_port: int = DEFAULT_PORTS["clickhouse_http_port"]
    bootstrap: str = ""
    clickhouse_host: str = "127.0.0.1"
    clickhouse_database: str = "signalement"
    clickhouse_user: str = "default"
    clickhouse_password: str = ""
    topic_prefix: str = ""
    partitions: int = 4
    app_id: str = "signalement"
    worker_dir: Path = field(default=ROOT / ".stack" / "worker")
    policy_path: Path = ROOT / "config" / "policy.yaml"
    reporters_path: Path = ROOT / "config" / "reporters.yaml"
    operators_path: Path = ROOT / "config" / "operators.yaml"
    log_level: str = "INFO"
    guarantee: str = "exactly_once"  # or at_least_once (streams/eos.py, docs/reliability.md)
    # seconds between commits: under exactly_once, records are visible downstream (read_committed)
    # only once committed, so this bounds each hop's added latency (Kafka Streams' default: 0.1)
    commit_interval: float = 0.1
    # least seconds from the end of a commit to the commit of a transaction holding an urgent
    # record (policy.yaml: `urgent`), instead of waiting for the commit interval
    urgent_commit_gap: float = 0.01
    # seconds between commits while an agent drains a backlog (streams.eos.Pace; 0: commit_interval)
    backlog_commit_interval: float = 1.0
    # the worker's first gc generation threshold, with start-up's objects frozen (streams.gctune;
    # 0: CPython's collector as it comes, whose full collections paused the worker ~50 ms each)
    gc_threshold: int = 10_000
    # seconds an agent waits to fill a batch (stream.take_events) before handling what it has
    batch_within: float = 0.01
    # seconds a produced batch waits for more records (0: a request per record); negative: the
    # guarantee's default (streams.app.producer_linger: 50 ms exactly-once, 5 ms at-least-once)
    producer_linger: float = -1.0
    # copies of each table partition kept by another worker (Faust's standbys), so a worker that
    # takes over a dead one's partitions holds their state already instead of rebuilding it from
    # the changelogs; each copy costs every worker ~90 µs of CPU per referral (docs/benchmarks.md)
    standby_replicas: int = 1
    # the worker's asyncio event loop: uvloop (libuv, where installed) or asyncio's own
    event_loop: str = "uvloop"
    secure: bool = False  # `stack up` also starts the SASL/SCRAM broker with ACLs (streams.security)
    secure_kafka_port: int = DEFAULT_PORTS["secure_kafka_port"]
    secure_controller_port: int = DEFAULT_PORTS["secure_controller_port"]
    kafka_user: str = ""  # set: every Kafka client authenticates as this SCRAM user (SASL_PLAINTEXT)
    kafka_password: str = ""  # default: the user's entry in <secrets_dir>/credentials.json
    secrets_dir: Path = ROOT / ".stack" / "secrets"

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_env("home", str(ROOT / ".stack")))
        recorded: dict[str, int] = {}
        ports_file = home / "ports.json"
        if ports_file.exists():
            recorded = json.loads(ports_file.read_text())
        values: dict[str, object] = {"home": home, "worker_dir": home / "worker", "secrets_dir": home / "secrets"}
        for f in fields(cls):
            raw = os.environ.get(PREFIX + ALIASES.get(f.name, f.name.upper()))
            if raw is None:
                if f.name in recorded:
                    values[f.name] = int(recorded[f.name])
                continue
            if f.type in ("int",):
                values[f.name] = int(raw)
            elif f.type in ("float",):
                values[f.name] = float(raw)
            elif f.type in ("Path",):
                values[f.name] = Path(raw)
            elif f.type in ("bool",):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = raw
        settings = cls(**values)  # type: ignore[arg-type]
        if not settings.bootstrap:
            settings = replace(settings, bootstrap=f"127.0.0.1:{settings.kafka_port}")
        return settings.with_stored_passwords()

    def with_stored_passwords(self) -> Settings:
        """Fill an empty kafka_password / clickhouse_password from the secrets file, if it has the user."""
        from streams.security import stored_password

        kafka = self.kafka_password or (stored_password(self, self.kafka_user) if self.kafka_user else "")
        clickhouse = self.clickhouse_password or (
            stored_password(self, "clickhouse-" + self.clickhouse_user) if self.clickhouse_user != "default" else "")
        return replace(self, kafka_password=kafka, clickhouse_password=clickhouse)

    @property
    def secure_bootstrap(self) -> str:
        """The SASL_PLAINTEXT listener of the secure broker."""
        return f"127.0.0.1:{self.secure_kafka_port}"
    @property
    def kafka_url(self) -> str:
        """The broker URL as Faust wants it."""
        return "kafka://" + self.bootstrap

    def confluent(self, **extra: object) -> dict[str, object]:
        """Base config for confluent-kafka clients (murmur2 to co-partition with Faust)."""
        conf: dict[str, object] = {"bootstrap.servers": self.bootstrap}
        if self.kafka_user:
            conf.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": SASL_MECHANISM,
                         "sasl.username": self.kafka_user, "sasl.password": self.kafka_password})
        conf.update(extra)
        return conf
