"""Notice a confluent-kafka consumer that lost its partitions and never got them back, so it can be replaced.

Why: with the stack's single broker, a restart sometimes leaves a librdkafka (2.16) group member
stranded. During the broker's controlled shutdown the client decommissions its only broker
("Group coordinator decommissioned") and re-bootstraps; usually it finds the coordinator again as
soon as the broker is back, but now and then it does not: its session times out ("Consumer
group session timed out ... (broker -1)"), it revokes its partitions, and then sends no JoinGroup
at all (the broker's log shows the old member expiring and the group staying empty). The
broker-restart test (tests/integration/test_broker_restart.py) saw it in 2 of ~15 runs on a loaded
machine: the ClickHouse sink in one, two operator clients in another, still without partitions
80-90 s after the broker was back. A new Consumer starts from the bootstrap servers and joins at
once, so the sink and the operator client replace theirs when `GroupWatch` says so.

The rule: a consumer that *had* partitions and has had none for `limit` seconds (longer than the
45 s session timeout plus the wait for the lost member to expire). A member that never had any
(more members than partitions) is left alone. After a replacement the watch re-arms: the new
consumer gets `limit` seconds to be assigned before it is replaced in turn (while the broker is
really down this repeats, cheaply).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("signalement.groupwatch")
REJOIN_LIMIT_S = 60.0
CHECK_EVERY_S = 1.0


class GroupWatch:
    """Call `check(consumer)` from the poll loop; True means: replace this consumer, then call `renewed()`."""

    def __init__(self, name: str, limit: float = REJOIN_LIMIT_S, every: float = CHECK_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.limit, self.every, self.clock = name, limit, every, clock
        self.had = False  # this consumer (or the one it replaced) held partitions once
        self.lost_since: float | None = None
        self.replaced = 0
        self._checked = float("-inf")

    def stuck(self, assigned: int) -> bool:
        """True once partitions held before have been missing for `limit` seconds."""
        now = self.clock()
        if assigned:
            if self.lost_since is not None:
                log.info("%s has partitions again after %.1f s", self.name, now - self.lost_since)
            self.had, self.lost_since = True, None
            return False
        if not self.had:
            return False
        if self.lost_since is None:
            self.lost_since = now
            return False
        return now - self.lost_since >= self.limit

    def check(self, consumer: Any) -> bool:
        """`stuck` on the consumer's current assignment, asked at most every `every` seconds."""
        now = self.clock()
        if now - self._checked < self.every:
            return False
        self._checked = now
        try:
            assigned = len(consumer.assignment())
        except Exception as exc:  # a closed or broken consumer holds nothing
            log.debug("%s: assignment() failed: %s", self.name, exc)
            assigned = 0
        if self.stuck(assigned):
            log.warning("%s: no partitions for %.0f s after holding some (group membership lost and not "
                        "regained): replacing the consumer", self.name, now - (self.lost_since or now))
            return True
        return False

    def renewed(self) -> None:
        """The consumer was replaced: give the new one `limit` seconds to be assigned."""
        self.replaced += 1
        self.had, self.lost_since = True, self.clock()
