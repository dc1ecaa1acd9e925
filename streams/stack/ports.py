"""Which ports the stack listens on: chosen once, recorded in <home>/ports.json, then kept.

A default port held by somebody else's process is swapped for a free one on the first `up`;
a port set by an environment variable or already recorded is never moved, only reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from streams.config import DEFAULT_PORTS, PREFIX, Settings
from streams.errors import StackError
from streams.stack import process
from streams.stack.process import console


def ports_file(settings: Settings) -> Path:
    return settings.home / "ports.json"


def recorded(settings: Settings) -> dict[str, int]:
    """The ports of ports.json, {} if none were recorded."""
    path = ports_file(settings)
    if not path.exists():
        return {}
    try:
        return {k: int(v) for k, v in json.loads(path.read_text()).items() if k in DEFAULT_PORTS}
    except (ValueError, AttributeError) as exc:
        raise StackError(f"{path} is not a JSON object of ports: {exc}; delete it to choose again") from exc


def _movable(settings: Settings, name: str, kept: dict[str, int]) -> bool:
    """Only a default port nobody asked for explicitly may be moved."""
    return (getattr(settings, name) == DEFAULT_PORTS[name] and name not in kept
            and PREFIX + name.upper() not in os.environ)


def resolve(settings: Settings, in_use_by_us: Callable[[str], bool]) -> Settings:
    """Settings whose four ports are free or held by our own running servers; records them."""
    kept = recorded(settings)
    chosen: dict[str, int] = {}
    for name in DEFAULT_PORTS:
        port = int(getattr(settings, name))
        if not in_use_by_us(name) and not process.port_free(port):
            if not _movable(settings, name, kept):
                raise StackError(f"port {port} ({name}) is taken by a process that is not ours "
                                 f"(see `ss -ltnp | grep {port}`); stop it, or set {PREFIX}{name.upper()}, "
                                 f"or delete {ports_file(settings)} to choose new ports")
            new = process.free_port(set(chosen.values()) | set(DEFAULT_PORTS.values()))
            console.print(f"  [yellow]port {port} ({name}) is taken by another process: using {new}[/]")
            port = new
        chosen[name] = port
    if chosen != kept:
        settings.home.mkdir(parents=True, exist_ok=True)
        ports_file(settings).write_text(json.dumps(chosen, indent=2) + "\n")
    old_bootstrap = f"127.0.0.1:{settings.kafka_port}"
    bootstrap = settings.bootstrap if settings.bootstrap not in ("", old_bootstrap) else ""
    settings = replace(settings, kafka_port=chosen["kafka_port"], controller_port=chosen["controller_port"],
                       clickhouse_tcp_port=chosen["clickhouse_tcp_port"],
                       clickhouse_http_port=chosen["clickhouse_http_port"])
    return replace(settings, bootstrap=bootstrap or f"127.0.0.1:{settings.kafka_port}")
