"""The quantile sketch against an exact nearest-rank computation."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.logic.sketch import EXACT_LIMIT, QuantileSketch, nearest_rank

pytestmark = pytest.mark.unit

QS = (0.5, 0.9, 0.99)
TOLERANCE = 0.01


def exact_quantile(values: list[int], q: float) -> int:
    """Nearest rank, independently: the ceil(q n)-th smallest value (1-based)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(Fraction(str(q)) * len(ordered)))
    return ordered[rank - 1]


def assert_close(sketch: QuantileSketch, values: list[int], qs: tuple[float, ...] = QS) -> None:
    """Every asked quantile within 1 % of the exact one."""
    got = sketch.quantiles(qs)
    for q, value in zip(qs, got, strict=True):
        want = exact_quantile(values, q)
        assert abs(value - want) <= TOLERANCE * want, (q, value, want, len(values))


Gen = Callable[[random.Random], int]
DISTRIBUTIONS: dict[str, Gen] = {
    "lognormal": lambda r: int(r.lognormvariate(11, 2)),
    "uniform": lambda r: r.randint(0, 7 * 86_400_000),
    "small-uniform": lambda r: r.randint(0, 300),
    "pareto": lambda r: int(1000 * r.paretovariate(0.8)) % (1 << 62),
    "duplicates": lambda r: r.choice((0, 1, 999, 1000, 1001, 60_000, 3_600_000)),
    "zeros-heavy": lambda r: 0 if r.random() < 0.7 else int(r.expovariate(1e-5)),
    "exponential": lambda r: int(r.expovariate(1 / 900_000)),
    "constant": lambda r: 123_457,
}
SIZES = (1, 2, 3, 10, 99, 256, 257, 1000, 5000, 20_000)


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("size", SIZES)
def test_accuracy_by_distribution(dist: str, size: int) -> None:
    for seed in range(5):
        rng = random.Random(f"{dist}/{size}/{seed}")
        values = [DISTRIBUTIONS[dist](rng) for _ in range(size)]
        assert_close(QuantileSketch.of(values), values, (0.0, 0.01, *QS, 0.999, 1.0))


@pytest.mark.parametrize("dist", ["lognormal", "pareto", "zeros-heavy"])
def test_accuracy_200k(dist: str) -> None:
    rng = random.Random(dist)
    values = [DISTRIBUTIONS[dist](rng) for _ in range(200_000)]
    sketch = QuantileSketch.of(values)
    assert_close(sketch, values)
    assert sketch.count == len(values) and sketch.sum == sum(values) and sketch.max == max(values)


def test_many_seeds_lognormal() -> None:
    for seed in range(200):
        rng = random.Random(seed)
        size = rng.choice((300, 700, 2000, 4000))
        sigma = rng.uniform(0.2, 3.0)
        values = [int(rng.lognormvariate(rng.uniform(0, 15), sigma)) for _ in range(size)]
        assert_close(QuantileSketch.of(values), values)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=1500),
       st.floats(min_value=0.0, max_value=1.0))
def test_accuracy_property(values: list[int], q: float) -> None:
    assert_close(QuantileSketch.of(values), values, (q, *QS))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=700),
       st.lists(st.integers(min_value=0, max_value=10**9), max_size=700))
def test_merge_equals_sketch_of_union(a: list[int], b: list[int]) -> None:
    merged = QuantileSketch.of(a)
    merged.merge(QuantileSketch.of(b))
    whole = QuantileSketch.of(a + b)
    assert merged.quantiles(QS) == whole.quantiles(QS)
    assert (merged.count, merged.sum, merged.min, merged.max) == (whole.count, whole.sum, whole.min, whole.max)
    assert merged.exact == whole.exact


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**52), max_size=600))
def test_bytes_round_trip(values: list[int]) -> None:
    sketch = QuantileSketch.of(values)
    data = sketch.to_bytes()
    back = QuantileSketch.from_bytes(data)
    assert back.to_bytes() == data
    assert back.quantiles(QS) == sketch.quantiles(QS)
    assert (back.count, back.sum, back.min, back.max, back.exact) == (
        sketch.count, sketch.sum, sketch.min, sketch.max, sketch.exact)


def test_round_trip_keeps_adding() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(10, 1)) for _ in range(5000)]
    back = QuantileSketch.from_bytes(QuantileSketch.of(values[:2500]).to_bytes())
    for v in values[2500:]:
        back.add(v)
    assert_close(back, values)


def test_serialised_size_is_small() -> None:
    rng = random.Random(3)
    big = QuantileSketch.of(int(rng.lognormvariate(12, 2)) for _ in range(100_000))
    assert len(big.to_bytes()) < 4_000
    assert len(QuantileSketch().to_bytes()) < 50
    assert len(QuantileSketch.of(range(0, 256_000, 1000)).to_bytes()) < 50 + 256 * 4


@pytest.mark.parametrize("data", [b"", b"\x09" * 60, QuantileSketch.of(range(1000)).to_bytes()[:-3]])
def test_from_bytes_rejects_garbage(data: bytes) -> None:
    with pytest.raises(ValueError):
        QuantileSketch.from_bytes(data)


def test_empty() -> None:
    sketch = QuantileSketch()
    assert sketch.quantiles(QS) == [0, 0, 0]
    assert (sketch.count, sketch.max, sketch.mean) == (0, 0, 0.0)


@pytest.mark.parametrize("n", [1, EXACT_LIMIT, EXACT_LIMIT + 1, 10_000])
def test_zeros(n: int) -> None:
    sketch = QuantileSketch.of([0] * n)
    assert sketch.quantiles((0.0, *QS, 1.0)) == [0] * 5
    sketch.add(5000)
    assert sketch.quantile(1.0) == 5000 and sketch.quantile(0.5) == 0


def test_exact_mode_then_buckets() -> None:
    sketch = QuantileSketch.of(range(1, EXACT_LIMIT + 1))
    assert sketch.exact and sketch.quantile(0.5) == EXACT_LIMIT // 2
    sketch.add(10**6)
    assert not sketch.exact


def test_small_values_are_exact_in_bucket_mode() -> None:
    values = list(range(100)) * 10
    sketch = QuantileSketch.of(values)
    assert not sketch.exact
    for q in (0.01, 0.1, 0.37, 0.5, 0.9, 0.99, 1.0):
        assert sketch.quantile(q) == exact_quantile(values, q)


def test_mean_and_sum_exact() -> None:
    values = [1, 2, 3, 4, 10**9] * 100
    sketch = QuantileSketch.of(values)
    assert sketch.sum == sum(values) and sketch.mean == sum(values) / len(values)


def test_negative_refused() -> None:
    with pytest.raises(ValueError):
        QuantileSketch().add(-1)


def test_merge_refuses_other_alpha() -> None:
    with pytest.raises(ValueError):
        QuantileSketch().merge(QuantileSketch(alpha=0.01))


@pytest.mark.parametrize(("q", "n", "rank"), [(0.07, 100, 7), (0.5, 1, 1), (0.5, 10, 5), (0.9, 10, 9),
                                              (0.99, 100, 99), (0.99, 101, 100), (0.0, 10, 1), (1.0, 10, 10),
                                              (0.29, 100, 29), (0.5, 11, 6)])
def test_nearest_rank(q: float, n: int, rank: int) -> None:
    assert nearest_rank(q, n) == rank


def test_nearest_rank_range() -> None:
    with pytest.raises(ValueError):
        nearest_rank(1.5, 3)


def test_bucket_range_grows_both_ways() -> None:
    high = [10**9 + i for i in range(400)]
    low = list(range(1, 400))
    grown = QuantileSketch.of(high + low + [5 * 10**11])
    assert_close(grown, high + low + [5 * 10**11], (0.01, 0.3, 0.5, 0.9, 0.999))
    merged = QuantileSketch.of(high)
    merged.merge(QuantileSketch.of(low))
    merged.merge(QuantileSketch.of([10**12] * 300))
    assert_close(merged, high + low + [10**12] * 300, (0.01, 0.3, 0.5, 0.6, 0.9))
    assert len(merged.to_bytes()) < 400
