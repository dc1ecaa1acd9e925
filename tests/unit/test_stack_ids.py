"""The KRaft cluster id the stack generates must be usable on kafka-storage's command line."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from streams.stack import kafka

pytestmark = pytest.mark.unit


def test_new_ids_never_start_with_a_dash_and_are_16_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # first draws start with "-" (0xf8... encodes to "-..."), the generator must skip them
    dashed = uuid.UUID(bytes=b"\xf8" + b"\x00" * 15)
    plain = uuid.UUID(bytes=b"\x10" * 16)
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    draws = iter([dashed, dashed, plain])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    cid = kafka.new_cluster_id()
    assert not cid.startswith("-")
    assert base64.urlsafe_b64decode(cid + "==") == plain.bytes


def test_a_kept_id_starting_with_a_dash_is_replaced(tmp_path: Path) -> None:
    stored = tmp_path / "cluster.id"
    stored.write_text("-6eG-pULTIOEv7sGZW6Hfg\n")
    fake = type("K", (), {"dir": tmp_path})()
    cid = kafka.Kafka.cluster_id(fake)  # type: ignore[arg-type]
    assert not cid.startswith("-") and stored.read_text().strip() == cid
    assert kafka.Kafka.cluster_id(fake) == cid  # then kept  # type: ignore[arg-type]
