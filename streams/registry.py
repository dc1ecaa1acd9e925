"""Registries of reporters and operators, loaded and validated once at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from streams.errors import ConfigError

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9-]{1,63}\.)+[a-z0-9-]{1,63}$")


@dataclass(frozen=True)
class Reporter:
    id: str
    name: str
    labelled: bool
    removal_orders: bool
    jurisdiction: str = ""


@dataclass(frozen=True)
class Operator:
    id: str
    name: str
    hosts: tuple[str, ...]


def _load(path: Path, root: str) -> dict[str, dict[str, Any]]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get(root), dict) or not doc[root]:
        raise ConfigError(f"{path}: expected a non-empty mapping under '{root}:'")
    for key, entry in doc[root].items():
        if not isinstance(key, str) or not ID_RE.match(key):
            raise ConfigError(f"{path}: id {key!r} must match {ID_RE.pattern}")
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {key}: expected a mapping")
    return doc[root]


def _check_keys(path: Path, key: str, entry: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise ConfigError(f"{path}: {key}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")


def load_reporters(path: Path) -> dict[str, Reporter]:
    out = {}
    for key, entry in _load(path, "reporters").items():
        _check_keys(path, key, entry, {"name", "labelled", "removal_orders", "jurisdiction"})
        for flag in ("labelled", "removal_orders"):
            if not isinstance(entry.get(flag, False), bool):
                raise ConfigError(f"{path}: {key}.{flag} must be true or false")
        out[key] = Reporter(key, str(entry.get("name", key)), bool(entry.get("labelled", False)),
                            bool(entry.get("removal_orders", False)), str(entry.get("jurisdiction", "")))
    return out


def load_operators(path: Path) -> dict[str, Operator]:
    out: dict[str, Operator] = {}
    owner: dict[str, str] = {}
    for key, entry in _load(path, "operators").items():
        _check_keys(path, key, entry, {"name", "hosts"})
        hosts = entry.get("hosts") or []
        if not isinstance(hosts, list) or not hosts:
            raise ConfigError(f"{path}: {key}.hosts must be a non-empty list")
        for host in hosts:
            if not isinstance(host, str) or not HOST_RE.match(host):
                raise ConfigError(f"{path}: {key}: {host!r} is not a lower-case host name")
            if host in owner:
                raise ConfigError(f"{path}: host {host} belongs to both {owner[host]} and {key}")
            owner[host] = key
        out[key] = Operator(key, str(entry.get("name", key)), tuple(hosts))
    return out


@dataclass(frozen=True)
class Registry:
    reporters: dict[str, Reporter]
    operators: dict[str, Operator]

    @classmethod
    def load(cls, reporters_path: Path, operators_path: Path) -> Registry:
        return cls(load_reporters(reporters_path), load_operators(operators_path))

    def host_index(self) -> dict[str, str]:
        """host -> operator id, for suffix lookup."""
        return {h: op.id for op in self.operators.values() for h in op.hosts}
