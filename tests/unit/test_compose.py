"""docker-compose.yml cannot run here (no Docker): check its shape instead."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams import security
from streams.config import DEFAULT_PORTS, ROOT
from streams.registry import Registry

pytestmark = pytest.mark.unit
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_present() -> None:
    assert set(COMPOSE["services"]) == {"kafka-format", "kafka", "clickhouse", "acls", "worker", "sink"}


def test_kafka_is_kraft_39_on_the_local_stack_port() -> None:
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:3.9")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert f"127.0.0.1:{DEFAULT_PORTS['kafka_port']}:19092" in kafka["ports"]
    assert "EXTERNAL://127.0.0.1:19092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]



def test_kafka_has_the_local_stacks_transaction_settings() -> None:
    """The compose broker runs transactions like the local one (verification off: docs/reliability.md)."""
    env = COMPOSE["services"]["kafka"]["environment"]
    local = dict(line.split("=", 1) for line in (ROOT / "streams" / "stack" / "kafka-server.properties").read_text()
                 .splitlines() if line and not line.startswith("#"))
    for key in ("transaction.partition.verification.enable", "transaction.state.log.min.isr"):
        assert str(env["KAFKA_" + key.upper().replace(".", "_")]).lower() == local[key].lower()


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


def kafka_env() -> dict[str, Any]:
    return COMPOSE["services"]["kafka"]["environment"]


def listeners(value: str) -> dict[str, str]:
    """'A://h:1,B://:2' -> {'A': 'h:1', 'B': ':2'}."""
    return dict(item.split("://", 1) for item in value.split(","))


def test_every_kafka_listener_is_sasl_and_the_authorizer_denies_by_default() -> None:
    env = kafka_env()
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners(env["KAFKA_LISTENERS"])) == set(protocols)
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}  # no PLAINTEXT listener left
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] == "SCRAM-SHA-512"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert env["KAFKA_SUPER_USERS"] == "User:admin"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    for name in ("INTERNAL", "EXTERNAL"):
        jaas = env[f"KAFKA_LISTENER_NAME_{name}_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
        assert jaas.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required") and jaas.endswith(";")
    assert env["KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG"].startswith(
        "org.apache.kafka.common.security.plain.PlainLoginModule required")
    assert "java.security.auth.login.config" in env["KAFKA_OPTS"]  # the image's configure script insists
    assert (ROOT / "deploy" / "kafka" / "jaas-empty.conf").exists()


def test_the_admin_scram_credential_is_written_at_format_time() -> None:
    fmt = COMPOSE["services"]["kafka-format"]
    script = " ".join(fmt["command"])
    assert "kafka-storage.sh format" in script and "--add-scram" in script and "SCRAM-SHA-512=[name=admin" in script
    assert "kafka-data:/var/lib/kafka/data" in fmt["volumes"]
    assert kafka_env()["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    depends = COMPOSE["services"]["kafka"]["depends_on"]
    assert depends["kafka-format"]["condition"] == "service_completed_successfully"
    assert "--command-config" in " ".join(COMPOSE["services"]["kafka"]["healthcheck"]["test"])


def test_pipeline_and_sink_run_as_their_principals_after_the_acls() -> None:
    services = COMPOSE["services"]
    assert services["acls"]["command"] == ["signalement", "security", "apply"]
    names = {p.name for p in security.principals(Registry.load(ROOT / "config" / "reporters.yaml",
                                                                ROOT / "config" / "operators.yaml"))}
    for service, user in (("worker", "pipeline"), ("sink", "sink")):
        env = services[service]["environment"]
        assert env["SIGNALEMENT_KAFKA_USER"] == user and user in names
        assert services[service]["depends_on"]["acls"]["condition"] == "service_completed_successfully"
    assert services["sink"]["environment"]["SIGNALEMENT_CLICKHOUSE_USER"] == "sink"


def _values(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in _values(value)]
    if isinstance(node, list):
        return [v for value in node for v in _values(value)]
    return [str(node)]


def test_no_password_is_written_in_the_compose_file() -> None:
    """Every password variable is interpolated from the environment, none is a literal."""
    for name, svc in COMPOSE["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if key.endswith("PASSWORD"):
                assert re.fullmatch(r"\$\{SIGNALEMENT_[A-Z_]+_PASSWORD:\?[^}]*\}", str(value)), (name, key, value)
    for value in _values(COMPOSE["services"]):
        for found in re.findall(r'password="([^"]*)"', value):
            assert found.startswith("${") or found.startswith("%s"), value


def test_clickhouse_gets_a_read_only_analyst_and_a_sink_user() -> None:
    ch = COMPOSE["services"]["clickhouse"]
    mount = next(v for v in ch["volumes"] if "users.d" in v)
    source, target = mount.split(":")[:2]
    assert target.startswith("/etc/clickhouse-server/users.d/")
    root = ET.parse(ROOT / source).getroot()
    assert root.find("profiles/readonly/readonly").text == "1"  # type: ignore[union-attr]
    users = root.find("users")
    assert users is not None and {u.tag for u in users} == {"analyst", "sink"}
    assert users.find("analyst/profile").text == "readonly"  # type: ignore[union-attr]
    assert users.find("sink/profile").text == "default"  # type: ignore[union-attr]
    for user in users:
        password = user.find("password")
        assert password is not None and not (password.text or "").strip()
        assert password.get("from_env") in ch["environment"]


def test_the_local_stack_users_file_has_the_same_users() -> None:
    text = (ROOT / "streams" / "stack" / "clickhouse-users.xml").read_text()
    root = ET.fromstring(text.replace("${analyst_sha256}", "0" * 64).replace("${sink_sha256}", "1" * 64))
    assert root.find("profiles/readonly/readonly").text == "1"  # type: ignore[union-attr]
    assert root.find("users/analyst/profile").text == "readonly"  # type: ignore[union-attr]
    assert root.find("users/analyst/password_sha256_hex").text == "0" * 64  # type: ignore[union-attr]
    assert root.find("users/sink/password_sha256_hex").text == "1" * 64  # type: ignore[union-attr]
