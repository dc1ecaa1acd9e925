"""An operator working through its lanes, in its own process (so the benchmark's own threads do not share
its interpreter): `python -m bench.operator_probe <operator> <seconds> <standard_ms> <out.json>`.

It runs clients.operator.OperatorClient (strict lane priority) for `seconds`: a standard or high
referral takes `standard_ms` to handle, a critical one is noted at once with now - reported_at.
Writes {"critical": [[referral_id, ms], ...], "other": count} to out.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from clients.operator import OperatorClient
from streams.config import Settings


def main(operator: str, seconds: float, standard_ms: float, out: Path) -> int:
    settings = Settings.from_env()
    critical: list[tuple[str, int]] = []
    other = [0]
    pause = standard_ms / 1000

    def handler(referral: dict[str, Any]) -> None:
        if referral["priority"] == "CRITICAL":
            critical.append((referral["referral_id"], time.time_ns() // 1_000_000 - referral["reported_at"]))
        else:
            other[0] += 1
            time.sleep(pause)

    client = OperatorClient(settings, operator, handler, group_id=f"{settings.topic_prefix}bench-operator")
    try:
        client.run(timeout=seconds)
    finally:
        client.close()
        out.write_text(json.dumps({"critical": critical, "other": other[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])))
