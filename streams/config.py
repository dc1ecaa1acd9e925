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

DEFAULT_PORTS = {
    "kafka_port": 39092,
    "controller_port": 39093,
    "clickhouse_tcp_port": 39000,
    "clickhouse_http_port": 38123,
}


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
    guarantee: str = "at_least_once"  # exactly_once: Faust transactions (fenced after restarts: not yet usable)

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_env("home", str(ROOT / ".stack")))
        recorded: dict[str, int] = {}
        ports_file = home / "ports.json"
        if ports_file.exists():
            recorded = json.loads(ports_file.read_text())
        values: dict[str, object] = {"home": home, "worker_dir": home / "worker"}
        for f in fields(cls):
            raw = os.environ.get(PREFIX + ALIASES.get(f.name, f.name.upper()))
            if raw is None:
                if f.name in recorded:
                    values[f.name] = int(recorded[f.name])
                continue
            if f.type in ("int",):
                values[f.name] = int(raw)
            elif f.type in ("Path",):
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        settings = cls(**values)  # type: ignore[arg-type]
        if not settings.bootstrap:
            settings = replace(settings, bootstrap=f"127.0.0.1:{settings.kafka_port}")
        return settings

    @property
    def kafka_url(self) -> str:
        """The broker URL as Faust wants it."""
        return "kafka://" + self.bootstrap

    def confluent(self, **extra: object) -> dict[str, object]:
        """Base config for confluent-kafka clients (murmur2 to co-partition with Faust)."""
        conf: dict[str, object] = {"bootstrap.servers": self.bootstrap}
        conf.update(extra)
        return conf
