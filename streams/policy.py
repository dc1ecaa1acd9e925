"""The label-priority policy file: deadlines, dedup horizon, window sizes (all in ms)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from streams.errors import ConfigError

PRIORITIES = ("CRITICAL", "HIGH", "STANDARD")
RANK = {p: i for i, p in enumerate(PRIORITIES)}  # lower is more urgent
UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(text: Any) -> int:
    """'15m' -> 900000 (ms). Plain numbers are milliseconds."""
    if isinstance(text, bool):
        raise ConfigError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        return int(text)
    match = DURATION_RE.match(str(text))
    if not match:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 15m, 1h, 7d)")
    return int(float(match.group(1)) * UNITS[match.group(2)])


@dataclass(frozen=True)
class Deadlines:
    ack_ms: int
    decide_ms: int


@dataclass(frozen=True)
class Policy:
    deadlines: dict[str, Deadlines]
    dedup_horizon_ms: int
    unknown_grace_ms: int
    window_size_ms: int
    window_step_ms: int
    window_grace_ms: int
    window_emit_interval_ms: int
    overdue_check_interval_ms: int
    # priorities whose records are committed at once under exactly_once (not at the commit interval)
    urgent: frozenset[str] = frozenset()

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            doc = yaml.safe_load(path.read_text())
            prios = doc["priorities"]
            deadlines, urgent = {}, set()
            for p in PRIORITIES:
                entry = prios[p]
                if not isinstance(entry.get("urgent", False), bool):
                    raise ConfigError(f"{path}: {p}: urgent must be true or false")
                if entry.get("urgent", False):
                    urgent.add(p)
                deadlines[p] = Deadlines(parse_duration(entry["ack_within"]), parse_duration(entry["decide_within"]))
                if deadlines[p].ack_ms > deadlines[p].decide_ms:
                    raise ConfigError(f"{path}: {p}: ack_within exceeds decide_within")
            unknown = set(prios) - set(PRIORITIES)
            if unknown:
                raise ConfigError(f"{path}: unknown priorities {sorted(unknown)}")
            win = doc["windows"]
            policy = cls(
                deadlines=deadlines,
                dedup_horizon_ms=parse_duration(doc["dedup"]["horizon"]),
                unknown_grace_ms=parse_duration(doc["decisions"]["unknown_grace"]),
                window_size_ms=parse_duration(win["size"]),
                window_step_ms=parse_duration(win["step"]),
                window_grace_ms=parse_duration(win["grace"]),
                window_emit_interval_ms=parse_duration(win.get("emit_interval", "1s")),
                overdue_check_interval_ms=parse_duration(doc.get("overdue", {}).get("check_interval", "5s")),
                urgent=frozenset(urgent),
            )
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: invalid policy: {exc!r}") from exc
        if policy.window_step_ms <= 0 or policy.window_size_ms % policy.window_step_ms:
            raise ConfigError(f"{path}: window size must be a positive multiple of the step")
        return policy
