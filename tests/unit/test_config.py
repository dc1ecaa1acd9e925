"""Settings.from_env precedence (env > ports.json > default) and how the stack picks its ports."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from streams.config import DEFAULT_PORTS, PREFIX, Settings
from streams.errors import StackError
from streams.stack import ports

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SIGNALEMENT_* variable leaks in from the engineer's shell; the home is a temp dir."""
    for key in list(os.environ):
        if key.startswith(PREFIX):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SIGNALEMENT_HOME", str(tmp_path))
    return tmp_path


def _record(home: Path, **values: int) -> None:
    (home / "ports.json").write_text(json.dumps(values))


def test_defaults_without_env_or_ports_file(tmp_path: Path) -> None:
    s = Settings.from_env()
    assert s.home == tmp_path and s.worker_dir == tmp_path / "worker"
    assert {name: getattr(s, name) for name in DEFAULT_PORTS} == DEFAULT_PORTS
    assert s.bootstrap == f"127.0.0.1:{DEFAULT_PORTS['kafka_port']}"


def test_ports_file_beats_defaults(tmp_path: Path) -> None:
    _record(tmp_path, kafka_port=41000, clickhouse_tcp_port=41001)
    s = Settings.from_env()
    assert (s.kafka_port, s.clickhouse_tcp_port) == (41000, 41001)
    assert s.controller_port == DEFAULT_PORTS["controller_port"]
    assert s.bootstrap == "127.0.0.1:41000"


def test_env_beats_ports_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _record(tmp_path, kafka_port=41000, clickhouse_http_port=41002)
    monkeypatch.setenv("SIGNALEMENT_KAFKA_PORT", "42000")
    s = Settings.from_env()
    assert s.kafka_port == 42000 and s.clickhouse_http_port == 41002
    assert s.bootstrap == "127.0.0.1:42000"


def test_env_bootstrap_and_types(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIGNALEMENT_BOOTSTRAP", "10.0.0.1:9092")
    monkeypatch.setenv("SIGNALEMENT_PARTITIONS", "8")
    monkeypatch.setenv("SIGNALEMENT_POLICY", str(tmp_path / "p.yaml"))
    s = Settings.from_env()
    assert s.bootstrap == "10.0.0.1:9092" and s.kafka_url == "kafka://10.0.0.1:9092"
    assert s.partitions == 8 and s.policy_path == tmp_path / "p.yaml"


@pytest.fixture
def busy_default_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A port held by a stranger, made the default Kafka port for the duration of the test."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = int(sock.getsockname()[1])
    monkeypatch.setattr(ports, "DEFAULT_PORTS", {**DEFAULT_PORTS, "kafka_port": port})
    yield port
    sock.close()


def _settings_on(port: int) -> Settings:
    return replace(Settings.from_env(), kafka_port=port, bootstrap=f"127.0.0.1:{port}")


def test_resolve_moves_a_busy_default_port_and_records_all(busy_default_port: int, tmp_path: Path) -> None:
    s = ports.resolve(_settings_on(busy_default_port), in_use_by_us=lambda name: name != "kafka_port")
    assert s.kafka_port != busy_default_port and s.bootstrap == f"127.0.0.1:{s.kafka_port}"
    recorded = json.loads((tmp_path / "ports.json").read_text())
    assert recorded == {name: getattr(s, name) for name in DEFAULT_PORTS}
    assert Settings.from_env().kafka_port == s.kafka_port  # stable from now on


def test_resolve_never_moves_a_port_set_in_env(busy_default_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALEMENT_KAFKA_PORT", str(busy_default_port))
    with pytest.raises(StackError, match="not ours"):
        ports.resolve(Settings.from_env(), in_use_by_us=lambda name: name != "kafka_port")


def test_resolve_never_moves_a_recorded_port(busy_default_port: int, tmp_path: Path) -> None:
    _record(tmp_path, kafka_port=busy_default_port)
    with pytest.raises(StackError, match=r"ports\.json"):
        ports.resolve(Settings.from_env(), in_use_by_us=lambda name: name != "kafka_port")


def test_resolve_keeps_ports_our_servers_hold(busy_default_port: int, tmp_path: Path) -> None:
    s = ports.resolve(_settings_on(busy_default_port), in_use_by_us=lambda name: True)
    assert s.kafka_port == busy_default_port
    assert json.loads((tmp_path / "ports.json").read_text())["kafka_port"] == busy_default_port


def test_producer_linger_default_follows_the_guarantee(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly-once lingers longer (commits send what lingers); at-least-once stays short; env wins."""
    from streams.app import PRODUCER_LINGER_EOS_S, PRODUCER_LINGER_S, producer_linger

    assert PRODUCER_LINGER_EOS_S == 0.05 and PRODUCER_LINGER_S == 0.005
    assert producer_linger(Settings.from_env()) == PRODUCER_LINGER_EOS_S
    monkeypatch.setenv("SIGNALEMENT_GUARANTEE", "at_least_once")
    assert producer_linger(Settings.from_env()) == PRODUCER_LINGER_S
    monkeypatch.setenv("SIGNALEMENT_PRODUCER_LINGER", "0")
    assert producer_linger(Settings.from_env()) == 0.0
    monkeypatch.setenv("SIGNALEMENT_PRODUCER_LINGER", "0.02")
    assert producer_linger(Settings.from_env()) == 0.02


def test_commit_intervals_out_of_range_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker aborts a transaction open for 60 s: neither interval may approach it."""
    from streams.app import build_app
    from streams.errors import ConfigError

    monkeypatch.setenv("SIGNALEMENT_BACKLOG_COMMIT_INTERVAL", "45")
    with pytest.raises(ConfigError, match="SIGNALEMENT_BACKLOG_COMMIT_INTERVAL=45"):
        build_app(Settings.from_env())
    monkeypatch.setenv("SIGNALEMENT_BACKLOG_COMMIT_INTERVAL", "1")
    monkeypatch.setenv("SIGNALEMENT_COMMIT_INTERVAL", "0")
    with pytest.raises(ConfigError, match="SIGNALEMENT_COMMIT_INTERVAL=0"):
        build_app(Settings.from_env())


def test_event_loop_setting_picks_the_loop_and_refuses_unknown_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop by default, asyncio's own on request, anything else a clear error before the worker starts."""
    import asyncio

    import uvloop

    from streams.app import install_event_loop
    from streams.errors import ConfigError

    try:
        monkeypatch.delenv("SIGNALEMENT_EVENT_LOOP", raising=False)
        assert install_event_loop(Settings.from_env()) == "uvloop"
        assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
        asyncio.set_event_loop_policy(None)
        monkeypatch.setenv("SIGNALEMENT_EVENT_LOOP", "asyncio")
        assert install_event_loop(Settings.from_env()) == "asyncio"
        assert not isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
        monkeypatch.setenv("SIGNALEMENT_EVENT_LOOP", "trio")
        with pytest.raises(ConfigError, match="SIGNALEMENT_EVENT_LOOP='trio'"):
            install_event_loop(Settings.from_env())
    finally:
        asyncio.set_event_loop_policy(None)
