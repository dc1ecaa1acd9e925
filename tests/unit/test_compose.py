"""docker-compose.yml cannot run here (no Docker): check its shape instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streams.config import DEFAULT_PORTS, ROOT

pytestmark = pytest.mark.unit
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_present() -> None:
    assert set(COMPOSE["services"]) == {"kafka", "clickhouse", "worker", "sink"}


def test_kafka_is_kraft_39_on_the_local_stack_port() -> None:
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:3.9")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert f"127.0.0.1:{DEFAULT_PORTS['kafka_port']}:39092" in kafka["ports"]
    assert "EXTERNAL://127.0.0.1:39092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_clickhouse_is_current_and_ports_match() -> None:
    ch = COMPOSE["services"]["clickhouse"]
    major = int(ch["image"].split(":")[1].split(".")[0])
    assert major >= 24
    assert f"127.0.0.1:{DEFAULT_PORTS['clickhouse_tcp_port']}:9000" in ch["ports"]
    assert f"127.0.0.1:{DEFAULT_PORTS['clickhouse_http_port']}:8123" in ch["ports"]


def test_pipeline_services_use_the_cli_and_point_at_the_services() -> None:
    for name in ("worker", "sink"):
        svc = COMPOSE["services"][name]
        assert svc["build"] == "."
        assert svc["environment"]["SIGNALEMENT_BOOTSTRAP"] == "kafka:9092"
        assert svc["environment"]["SIGNALEMENT_CLICKHOUSE_HOST"] == "clickhouse"
    assert Path(ROOT / "Dockerfile").exists()
