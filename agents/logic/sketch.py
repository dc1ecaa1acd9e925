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

Buckets are a dense list from the lowest to the highest bucket seen (about 2,000 buckets span
1 ms .. 7 days, 4,400 the whole int64 range), so ``add`` is an index increment and ``quantiles``
runs at C speed (``accumulate`` + ``bisect``). Serialised: a 46-byte header, then the exact
values (1-8 bytes each, narrowest width that fits) or the bucket counts (narrowest width, zlib
level 1; typically 1-3 KB for 100k log-normal values, tens of bytes for a few distinct values).
Totals are stored as unsigned 64-bit (a sum of durations below 2^64 ms, i.e. forever).
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate

ALPHA = 0.005
EXACT_LIMIT = 256
_Q_SCALE = 1_000_000  # quantiles are resolved to 1e-6 so ranks are computed in exact integers
_VERSION = 1
_EXACT, _BINS = 0, 1
_HEADER = struct.Struct("<BBdQQQQ")  # version, mode, alpha, count, sum, min, max
_BINS_HEADER = struct.Struct("<QIqBI")  # zeros, buckets, first key, count width code, zlib size
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

    __slots__ = ("_base", "_bins", "_exact", "_gamma", "_mult", "alpha", "count", "max", "min", "sum", "zeros")

    def __init__(self, alpha: float = ALPHA) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha out of (0, 1): {alpha}")
        self.alpha = alpha
        self._gamma = (1.0 + alpha) / (1.0 - alpha)
        self._mult = 1.0 / _log(self._gamma)
        self._exact: list[int] | None = []
        self._bins: list[int] = []  # dense counts of buckets _base, _base + 1, ...
        self._base = 0
        self.zeros = 0
        self.count = 0
        self.sum = 0
        self.min = 0
        self.max = 0

    def add(self, value: int) -> None:
        """Record one duration (ms, >= 0) in O(1) (amortised: the bucket range grows rarely)."""
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
            i = key - self._base
            bins = self._bins
            if 0 <= i < len(bins):
                bins[i] += 1
            else:
                self._bin(key, 1)

    def _bin(self, key: int, n: int) -> None:
        """Add ``n`` to a bucket, growing the dense range to reach it."""
        bins = self._bins
        i = key - self._base
        if not bins:
            self._base = key
            bins.append(n)
        elif i < 0:
            self._bins = [n, *([0] * (-i - 1)), *bins]
            self._base = key
        elif i >= len(bins):
            bins.extend([0] * (i - len(bins)))
            bins.append(n)
        else:
            bins[i] += n

    def _add_binned(self, value: int) -> None:
        """Bucket one value without touching the totals."""
        if value == 0:
            self.zeros += 1
        else:
            self._bin(_ceil(_log(value) * self._mult), 1)

    def _to_bins(self) -> None:
        """Leave the exact mode: pour the kept values into buckets."""
        exact, self._exact = self._exact or [], None
        for value in exact:
            self._add_binned(value)

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
        if other._bins:
            self._bin(other._base, 0)
            self._bin(other._base + len(other._bins) - 1, 0)
            bins, offset = self._bins, other._base - self._base
            for j, n in enumerate(other._bins):
                if n:
                    bins[offset + j] += n

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
        """Several nearest-rank quantiles from one cumulative pass (C-speed accumulate + bisect)."""
        n = self.count
        if n == 0:
            return [0] * len(qs)
        ranks = [nearest_rank(q, n) for q in qs]
        if self._exact is not None:
            ordered = sorted(self._exact)
            return [ordered[r - 1] for r in ranks]
        cumulative = list(accumulate(self._bins))
        out = []
        for rank in ranks:
            if rank == n:
                out.append(self.max)
            elif rank <= self.zeros:
                out.append(0)
            else:
                out.append(self._value_of(self._base + bisect_left(cumulative, rank - self.zeros)))
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
        code, body = _pack_uints(self._bins)
        body = zlib.compress(body, 1)
        return head + _BINS_HEADER.pack(self.zeros, len(self._bins), self._base, code, len(body)) + body

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
            zeros, nbins, base, code, size = _BINS_HEADER.unpack_from(data, offset)
            offset += _BINS_HEADER.size
            if offset + size > len(data):
                raise ValueError("truncated sketch")
            raw = zlib.decompress(data[offset:offset + size])
            bins, used = _unpack_uints(code, raw, nbins, 0)
        except (struct.error, IndexError, zlib.error) as exc:
            raise ValueError(f"bad sketch bytes: {exc}") from exc
        if used != len(raw):
            raise ValueError("bad sketch bytes: bucket count mismatch")
        sketch._exact, sketch.zeros, sketch._bins, sketch._base = None, zeros, bins, base
        return sketch, offset + size

    @classmethod
    def of(cls, values: Iterable[int], alpha: float = ALPHA) -> QuantileSketch:
        """A sketch of these values (tests, back-fills)."""
        sketch = cls(alpha)
        for value in values:
            sketch.add(value)
        return sketch

    def __repr__(self) -> str:
        mode = "exact" if self._exact is not None else f"{sum(1 for n in self._bins if n)} bins"
        return f"QuantileSketch(n={self.count}, {mode}, min={self.min}, max={self.max})"
