"""Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body) over the schemas/ catalogue.

Schemas are parsed once. Times travel as ints (ms since the epoch): logical types are
stripped from the parsed copy used for reading and writing, which leaves the bytes
unchanged (the Parsing Canonical Form and the fingerprint ignore logicalType).

Records written outside the pipeline (`EXTERNAL`: referrals, decisions) must also be in Avro's
canonical binary form: they are re-encoded after decoding and compared byte for byte (about
10 us a record). fastavro alone accepts a negative enum or union index (Python's list[-1]: enum
index -1 reads as the last symbol) and any non-zero boolean byte as true; such bytes are no
valid Avro, and a reader in another language would see something else, so they are BAD_AVRO.
Every Avro library writes the canonical form (minimal varints, an array in one block).

The check's cost can be avoided when the caller encodes a record that extends the one decoded
(`check_canonical` with `extended`): intake encodes its candidate anyway, a RoutedReferral whose
fields begin with the Referral's, the same values but the resolved operator. Then the referral's
bytes are canonical exactly when they equal the candidate's, field for field, up to the end of
the Referral's fields (~3 us of sizing and slicing instead of ~8-10 us of encoding), since a body that decoded
in full can be neither a shorter nor a longer prefix of the canonical one.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streams.errors import BadAvroError, SchemaUnknownError

MAGIC = b"\xc3\x01"
EXTERNAL = frozenset({"Referral", "OperatorDecision"})  # written by reporters and operators
HEADER_SIZE = 10
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

Record = dict[str, Any]
UNSIZED = object()  # Schema.size_before: no LeadingSize made yet for the field


def _without(node: Any, attribute: str) -> Any:
    """A schema node without `attribute` anywhere in it (logicalType, doc)."""
    if isinstance(node, dict):
        return {k: _without(v, attribute) for k, v in node.items() if k != attribute}
    if isinstance(node, list):
        return [_without(v, attribute) for v in node]
    return node


def _varint_size(n: int) -> int:
    """Bytes of the varint of a zigzagged value n >= 0."""
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def _string_size(value: str) -> int:
    size = len(value) if value.isascii() else len(value.encode())
    return _varint_size(size << 1) + size


@dataclass(frozen=True)
class LeadingSize:
    """How to size the canonical encoding of a record's fields before a given one, when their
    types are among string, boolean, an enum of at most 64 symbols and a union of null and string:
    a fixed part (one byte per boolean, enum or union index), plus each string's."""

    fixed: int
    strings: tuple[str, ...]
    optional: tuple[str, ...]  # unions of null and string

    @classmethod
    def of(cls, fields: list[dict[str, Any]], field: str) -> LeadingSize | None:
        fixed, strings, optional = 0, list[str](), list[str]()
        for f in fields:
            name, avro_type = f["name"], f["type"]
            if name == field:
                return cls(fixed, tuple(strings), tuple(optional))
            if avro_type == "string":
                strings.append(name)
            elif avro_type == ["null", "string"]:
                fixed += 1
                optional.append(name)
            elif avro_type == "boolean" or (isinstance(avro_type, dict) and avro_type.get("type") == "enum"
                                            and len(avro_type["symbols"]) <= 64):
                fixed += 1
            else:
                return None
        return None

    def __call__(self, record: Mapping[str, Any]) -> int:
        size = self.fixed
        for name in self.strings:
            size += _string_size(record[name])
        for name in self.optional:
            value = record[name]
            if value is not None:
                size += _string_size(value)
        return size


def _encode_optional_string(value: str | None) -> bytes:
    """Avro's canonical encoding of a value of the union ["null", "string"]."""
    if value is None:
        return b"\0"
    data = value.encode()
    n, out = len(data) << 1, bytearray(b"\2")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + data


@dataclass(frozen=True)
class Schema:
    """One record schema of the catalogue, ready to encode and decode."""

    name: str
    raw: dict[str, Any]
    parsed: Any
    fingerprint: int
    header: bytes

    @cached_property
    def _leading(self) -> dict[str, LeadingSize | None]:
        return {}

    def size_before(self, record: Mapping[str, Any], field: str) -> int | None:
        """Bytes of the canonical encoding of `record`'s fields before `field` (None: a type not handled)."""
        sizer = self._leading.get(field, UNSIZED)
        if sizer is UNSIZED:
            sizer = self._leading[field] = LeadingSize.of(self.raw["fields"], field)
        return None if sizer is None else sizer(record)  # type: ignore[operator]

    def encode(self, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.header)
        fastavro.schemaless_writer(buf, self.parsed, record)
        return buf.getvalue()


def crc64_fingerprint(schema: dict[str, Any]) -> int:
    """CRC-64-AVRO of the Parsing Canonical Form, as the spec's (Java's) 64-bit value.

    fastavro's hex string is the value's little-endian bytes, i.e. already the header's order.
    """
    return int.from_bytes(bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")), "little")


class Codec:
    """Encodes by record name; decodes by looking the fingerprint up in the catalogue."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR, strict: frozenset[str] = EXTERNAL) -> None:
        self.strict = strict
        self.by_name: dict[str, Schema] = {}
        self.by_fingerprint: dict[bytes, Schema] = {}
        self._prefixes: dict[tuple[bytes, bytes], bool] = {}  # _begins_with, by (fingerprint, header)
        for path in sorted(schema_dir.glob("*.avsc")):
            raw = json.loads(path.read_text())
            if raw.get("name") != path.stem:
                raise ValueError(f"{path}: record name {raw.get('name')!r} must equal the file name")
            fp = crc64_fingerprint(raw)
            header = MAGIC + struct.pack("<Q", fp)
            parsed = fastavro.parse_schema(_without(raw, "logicalType"))
            schema = Schema(path.stem, raw, parsed, fp, header)
            self.by_name[schema.name] = schema
            self.by_fingerprint[header[2:]] = schema

    def schema(self, name: str) -> Schema:
        return self.by_name[name]

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        return self.by_name[name].encode(record)

    def decode_any(self, data: bytes | None, canonical: bool = True) -> tuple[str, Record]:
        """Decode a single-object message; return (record name, record)."""
        if data is None or len(data) < HEADER_SIZE:
            raise BadAvroError(f"message of {0 if data is None else len(data)} bytes is shorter than the 10-byte header")
        if data[:2] != MAGIC:
            raise BadAvroError(f"bad magic {data[:2].hex()}: not Avro single-object encoding (expected c301)")
        schema = self.by_fingerprint.get(data[2:HEADER_SIZE])
        if schema is None:
            fp = struct.unpack("<Q", data[2:HEADER_SIZE])[0]
            raise SchemaUnknownError(f"no schema in the catalogue has fingerprint {fp:#018x}")
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            record = fastavro.schemaless_reader(buf, schema.parsed, None)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise BadAvroError(f"cannot decode {schema.name}: {type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data):
            raise BadAvroError(f"{len(data) - buf.tell()} trailing bytes after the {schema.name} body")
        if canonical and schema.name in self.strict:
            _check_canonical(schema, record, data)
        return schema.name, record  # type: ignore[return-value]

    def decode(self, data: bytes | None, expected: str, canonical: bool = True) -> Record:
        """Decode a message that must be of record type `expected`.

        `canonical=False`: no canonical-form check now; the caller makes it (`check_canonical`)."""
        name, record = self.decode_any(data, canonical)
        if name != expected:
            raise SchemaUnknownError(f"expected a {expected}, got a {name}")
        return record

    def check_canonical(self, data: bytes, record: Record,
                        extended: tuple[Mapping[str, Any], bytes] | None = None, changed: str = "") -> None:
        """Raise BadAvroError unless `data`, which decoded to `record`, is its canonical encoding.

        `extended`: a record and its encoding by this codec, whose schema begins with `record`'s
        fields, probably with the same values but for field `changed` (a union of null and
        string). The bytes are then compared, not encoded again; any difference leaves the
        verdict to the full check."""
        schema = self.by_fingerprint[data[2:HEADER_SIZE]]
        if extended is None or not self._begins_with(extended[1], schema) \
                or not _extends(schema, data, record, *extended, changed):
            _check_canonical(schema, record, data)

    def _begins_with(self, encoded: bytes, schema: Schema) -> bool:
        """Whether the schema `encoded` was written with begins with `schema`'s fields (names and
        types, docs aside): what `_extends` rests on, checked once per pair of schemas."""
        pair = (encoded[2:HEADER_SIZE], schema.header)
        known = self._prefixes.get(pair)
        if known is None:
            other = self.by_fingerprint.get(pair[0])
            fields = schema.raw["fields"]
            known = self._prefixes[pair] = other is not None and \
                _without(other.raw["fields"][:len(fields)], "doc") == _without(fields, "doc")
        return known


def _extends(schema: Schema, data: bytes, record: Mapping[str, Any], other: Mapping[str, Any], encoded: bytes,
             changed: str) -> bool:
    """True if `data` is `encoded`'s canonical bytes of `other`'s fields before `changed`, then
    the canonical bytes of `record[changed]`, then `encoded`'s bytes after `other[changed]`.

    Such bytes are canonical encodings of values, one field after the other; as `data` decoded
    in full to `record` with no trailing bytes, it is a body neither shorter nor longer than
    those fields', so those values are `record`'s and `data` is its canonical encoding."""
    before = schema.size_before(other, changed)
    if before is None:
        return False
    start = HEADER_SIZE + before
    mine, theirs = _encode_optional_string(record[changed]), _encode_optional_string(other[changed])
    after, rest = start + len(mine), start + len(theirs)
    return (data[HEADER_SIZE:start] == encoded[HEADER_SIZE:start] and data[start:after] == mine
            and encoded[start:rest] == theirs and data[after:] == encoded[rest:rest + len(data) - after])


def _check_canonical(schema: Schema, record: Any, data: bytes) -> None:
    """Raise BadAvroError unless data is exactly how Avro encodes the record it decoded to."""
    try:
        again = schema.encode(record)
    except Exception as exc:  # e.g. a long outside 64 bits read from an over-long varint
        raise BadAvroError(f"{schema.name} does not re-encode: {type(exc).__name__}: {exc}") from exc
    if again != data:
        at = next((i for i, (a, b) in enumerate(zip(again, data, strict=False)) if a != b), min(len(again), len(data)))
        raise BadAvroError(f"{schema.name} is not in Avro's canonical binary form (first difference at byte {at}): "
                           "a negative or out-of-range enum or union index, a boolean byte other than 0 or 1, "
                           "or an over-long varint")


@lru_cache(maxsize=1)
def default_codec() -> Codec:
    """The process-wide codec over schemas/ (parsed once)."""
    return Codec()
