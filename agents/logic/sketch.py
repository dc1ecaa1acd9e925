"""A mergeable quantile summary of non-negative integer durations with bounded relative error.

DDSketch-style: a positive value v goes to bucket ``k = ceil(log_gamma(v))`` with
``gamma = (1 + alpha) / (1 - alpha)``; the bucket's representative ``2 gamma^k / (gamma + 1)`` is
within ``alpha * v`` of every value in it. Zeros have their own counter. While at most
``EXACT_LIMIT`` values were seen they are kept verbatim, so small windows report exact values.

``quantile(q)`` is the NEAREST-RANK percentile (rank ``ceil(q * n)``, 1-based): the sketch finds
the bucket holding the value of that rank, so the answer is that exact value within ``alpha``
relative error, plus at most 0.5 from rounding to an integer (exact for values below
``1 / (2 alpha)``, because neighbouring integers then fall in distinct buckets). With the default
``alpha = 0.005`` that is within 1 % of the exact nearest-rank value for every value >= 0.
The result is also clamped to the observed ``[min, max]``.

Sizes: about 1,200 buckets cover 1 ms .. 7 days; serialised, a bucket costs 2-3 bytes (delta of
the bucket index + count, packed with the narrowest fixed width that fits), the exact mode
1-8 bytes per value, plus a 46-byte header. Totals are stored as unsigned 64-bit (a sum of
durations below 2^64 ms, i.e. forever).
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Iterable, Sequence

ALPHA = 0.005
EXACT_LIMIT = 256
_Q_SCALE = 1_000_000  # quantiles are resolved to 1e-6 so ranks are computed in exact integers
_VERSION = 1
_EXACT, _BINS = 0, 1
_HEADER = struct.Struct("<BBdQQQQ")  # version, mode, alpha, count, sum, min, max
_BINS_HEADER = struct.Struct("<QIqBB")  # zeros, bins, first key, delta width code, count width code
_WIDTH = struct.Struct("<B")
_CODES = [next(c for c in "BHILQ" if array(c).itemsize == size) for size in (1, 2, 4, 8)]
_log = math.log
_ceil = math.ceil


def nearest_rank(q: float, n: int) -> int:
    """The 1-based rank ``ceil(q * n)`` (at least 1), in integers so 0.07 * 100 stays 7."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile out of [0, 1]: {q}")
    return max(1, -(-round(q * _Q_SCALE) * n // _Q_SCALE))


def _pack_uints(values: Sequence[int]) -> tuple[int, bytes]:
    """Pack unsigned ints little-endian with the narrowest width that fits (code, bytes)."""
    top = max(values, default=0)
    code = 0 if top < 1 << 8 else 1 if top < 1 << 16 else 2 if top < 1 << 32 else 3
    arr = array(_CODES[code], values)
    if sys.byteorder == "big":
        arr.byteswap()
    return code, arr.tobytes()


def _unpack_uints(code: int, data: bytes | memoryview, n: int, offset: int) -> tuple[list[int], int]:
    """Read ``n`` packed unsigned ints of width ``code`` from ``offset``; returns (values, new offset)."""
    arr = array(_CODES[code])
    end = offset + n * arr.itemsize
    if end > len(data):
        raise ValueError("truncated sketch")
    arr.frombytes(bytes(data[offset:end]))
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tolist(), end


class QuantileSketch:
    """Counts, sum, min, max and relative-error quantiles of non-negative ints; O(1) add."""

    __slots__ = ("_bins", "_exact", "_gamma", "_mult", "alpha", "count", "max", "min", "sum", "zeros")

    def __init__(self, alpha: float = ALPHA) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha out of (0, 1): {alpha}")
        self.alpha = alpha
        self._gamma = (1.0 + alpha) / (1.0 - alpha)
        self._mult = 1.0 / _log(self._gamma)
        self._exact: list[int] | None = []
        self._bins: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.sum = 0
        self.min = 0
        self.max = 0

    def add(self, value: int) -> None:
        """Record one duration (ms, >= 0) in O(1)."""
        if value < 0:
            raise ValueError(f"negative value: {value}")
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.sum += value
        exact = self._exact
        if exact is not None:
            exact.append(value)
            if len(exact) > EXACT_LIMIT:
                self._to_bins()
        elif value == 0:
            self.zeros += 1
        else:
            key = _ceil(_log(value) * self._mult)
            bins = self._bins
            bins[key] = bins.get(key, 0) + 1

    def _to_bins(self) -> None:
        """Leave the exact mode: pour the kept values into buckets."""
        exact, self._exact = self._exact or [], None
        bins, mult = self._bins, self._mult
        for value in exact:
            if value == 0:
                self.zeros += 1
            else:
                key = _ceil(_log(value) * mult)
                bins[key] = bins.get(key, 0) + 1

    def merge(self, other: QuantileSketch) -> None:
        """Fold ``other`` into this sketch (same alpha); ``other`` is left untouched."""
        if other.alpha != self.alpha:
            raise ValueError(f"cannot merge alpha {other.alpha} into {self.alpha}")
        if other.count == 0:
            return
        if self.count == 0 or other.min < self.min:
            self.min = other.min
        self.max = max(self.max, other.max)
        self.count += other.count
        self.sum += other.sum
        if self._exact is not None and other._exact is not None and len(self._exact) + len(other._exact) <= EXACT_LIMIT:
            self._exact.extend(other._exact)
            return
        if self._exact is not None:
            self._to_bins()
        if other._exact is not None:
            for value in other._exact:
                self._add_binned(value)
            return
        self.zeros += other.zeros
        bins = self._bins
        for key, n in other._bins.items():
            bins[key] = bins.get(key, 0) + n

    def _add_binned(self, value: int) -> None:
        """Bucket one value without touching the totals (used by merge)."""
        if value == 0:
            self.zeros += 1
        else:
            key = _ceil(_log(value) * self._mult)
            self._bins[key] = self._bins.get(key, 0) + 1

    @property
    def exact(self) -> bool:
        """True while every value is kept verbatim (quantiles are then exact)."""
        return self._exact is not None

    @property
    def mean(self) -> float:
        """Arithmetic mean (exact), 0.0 when empty."""
        return self.sum / self.count if self.count else 0.0

    def quantile(self, q: float) -> int:
        """Nearest-rank q-quantile (0 when empty), within alpha relative error."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[int]:
        """Several nearest-rank quantiles in one pass over the sorted buckets."""
        n = self.count
        if n == 0:
            return [0] * len(qs)
        ranks = [nearest_rank(q, n) for q in qs]
        if self._exact is not None:
            ordered = sorted(self._exact)
            return [ordered[r - 1] for r in ranks]
        out = [0] * len(qs)
        keys = sorted(self._bins)
        i, cum, value = -1, self.zeros, 0
        for j in sorted(range(len(qs)), key=ranks.__getitem__):
            while cum < ranks[j]:
                i += 1
                cum += self._bins[keys[i]]
                value = self._value_of(keys[i])
            out[j] = self.max if ranks[j] == n else value
        return out

    def _value_of(self, key: int) -> int:
        """The bucket's representative, rounded and clamped to what was observed."""
        value = int(2.0 * self._gamma**key / (self._gamma + 1.0) + 0.5)
        return self.min if value < self.min else self.max if value > self.max else value

    def to_bytes(self) -> bytes:
        """Compact, portable (little-endian) serialisation for a state table."""
        head = _HEADER.pack(_VERSION, _EXACT if self._exact is not None else _BINS, self.alpha,
                            self.count, self.sum, self.min, self.max)
        if self._exact is not None:
            code, body = _pack_uints(self._exact)
            return head + _WIDTH.pack(code) + body
        keys = sorted(self._bins)
        first = keys[0] if keys else 0
        deltas = [b - a for a, b in zip([first, *keys], keys, strict=False)]
        dcode, dbody = _pack_uints(deltas)
        ccode, cbody = _pack_uints([self._bins[k] for k in keys])
        return head + _BINS_HEADER.pack(self.zeros, len(keys), first, dcode, ccode) + dbody + cbody

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> QuantileSketch:
        """Inverse of ``to_bytes``."""
        sketch, _ = cls.read(data, 0)
        return sketch

    @classmethod
    def read(cls, data: bytes | memoryview, offset: int) -> tuple[QuantileSketch, int]:
        """Decode a sketch at ``offset`` of a larger buffer; returns it and the offset after it."""
        try:
            version, mode, alpha, count, total, lo, hi = _HEADER.unpack_from(data, offset)
            if version != _VERSION or mode not in (_EXACT, _BINS):
                raise ValueError(f"unknown sketch encoding {version}/{mode}")
            sketch = cls(alpha)
            sketch.count, sketch.sum, sketch.min, sketch.max = count, total, lo, hi
            offset += _HEADER.size
            if mode == _EXACT:
                (code,) = _WIDTH.unpack_from(data, offset)
                sketch._exact, offset = _unpack_uints(code, data, count, offset + 1)
                return sketch, offset
            zeros, nbins, first, dcode, ccode = _BINS_HEADER.unpack_from(data, offset)
            deltas, offset = _unpack_uints(dcode, data, nbins, offset + _BINS_HEADER.size)
            counts, offset = _unpack_uints(ccode, data, nbins, offset)
        except (struct.error, IndexError) as exc:
            raise ValueError(f"bad sketch bytes: {exc}") from exc
        sketch._exact, sketch.zeros = None, zeros
        key = first
        for delta, n in zip(deltas, counts, strict=True):
            key += delta
            sketch._bins[key] = n
        return sketch, offset

    @classmethod
    def of(cls, values: Iterable[int], alpha: float = ALPHA) -> QuantileSketch:
        """A sketch of these values (tests, back-fills)."""
        sketch = cls(alpha)
        for value in values:
            sketch.add(value)
        return sketch

    def __repr__(self) -> str:
        mode = "exact" if self._exact is not None else f"{len(self._bins)} bins"
        return f"QuantileSketch(n={self.count}, {mode}, min={self.min}, max={self.max})"
