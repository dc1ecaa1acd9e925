"""The worker's garbage collector: fewer and shorter collections (SIGNALEMENT_GC_THRESHOLD).

CPython collects its youngest generation every 700 net allocations of tracked objects and all
three every 100 of those, and a full collection walks every tracked object, the hundreds of
thousands that Faust, aiokafka and the app built at start-up included. At 1,250 referrals/s that
was 26 full collections a minute of ~45-53 ms each, each a pause of the event loop (every agent
waits), and ~2.5 s of collections a minute in all. `tune` moves what start-up built out of the
collector's reach (`gc.freeze`: such objects are never collected, so it runs before the worker
starts, never once events flow) and raises the youngest generation's threshold: ~6 full
collections a minute of ~10 ms, ~0.15 s of collections in all (docs/benchmarks.md, "What was
optimised", 18). `GcClock` times the collections for the worker's per-minute log line.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

# The older generations' thresholds under a tuned first one: CPython's own, so garbage in reference
# cycles that outlived a young collection (a Faust event, say, which its consumer tracks weakly
# until it is freed) is still found within about a million allocations.
OLDER = (10, 10)


def tune(threshold: int) -> None:
    """Freeze what exists now and collect the youngest generation every `threshold` allocations
    (0: leave the collector as CPython sets it). Call once, after start-up built its objects and
    before any event is taken: an object frozen is never collected."""
    if threshold <= 0:
        return
    gc.collect()  # garbage made by start-up is freed, not frozen
    gc.freeze()
    gc.set_threshold(threshold, *OLDER)


@dataclass
class GcClock:
    """A gc callback adding up the collections and their time per generation."""

    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
    _started: float = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._started
            self.counts[generation] += 1

    def install(self) -> GcClock:
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        return self

    def take(self) -> str:
        """`gc_ms=a/b/c gc_collections=x/y/z` (generations 0/1/2) since the last call, then reset."""
        line = (f"gc_ms={'/'.join(str(round(s * 1000)) for s in self.seconds)} "
                f"gc_collections={'/'.join(str(n) for n in self.counts)}")
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        return line
