"""The ACL table, the passwords file and the SASL settings, without a broker (test_acl.py has the broker)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from streams import security
from streams.config import PREFIX, ROOT, Settings
from streams.registry import Registry
from streams.topics import Topics

pytestmark = pytest.mark.unit
REGISTRY = Registry.load(ROOT / "config" / "reporters.yaml", ROOT / "config" / "operators.yaml")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith(PREFIX):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SIGNALEMENT_HOME", str(tmp_path))
    return tmp_path


def rights(prefix: str = "p.", app: str = "p.app") -> dict[str, set[tuple[str, str, str]]]:
    """principal -> {(resource type, name or 'prefix*', operation)}."""
    out: dict[str, set[tuple[str, str, str]]] = {}
    for principal, rtype, ptype, name, ops in security.rules(REGISTRY, Topics(prefix=prefix), app):
        for op in ops:
            out.setdefault(principal, set()).add((rtype, name if ptype == "LITERAL" else name + "*", op))
    return out


def test_a_reporter_may_write_and_describe_its_own_topics_and_nothing_else() -> None:
    by_user = rights()
    for reporter in REGISTRY.reporters:
        own = (f"p.reports.{reporter}", f"p.reports.{reporter}.urgent")
        assert by_user[f"User:reporter-{reporter}"] == {("TOPIC", t, op) for t in own for op in ("WRITE", "DESCRIBE")}


def test_an_operator_reads_its_lanes_with_its_group_and_writes_its_decisions() -> None:
    by_user = rights()
    for op in REGISTRY.operators:
        got = by_user[f"User:operator-{op}"]
        lanes = {f"p.operator.{op}.{lane}" for lane in ("critical", "high", "standard")}
        assert {n for r, n, o in got if r == "TOPIC" and o == "READ"} == lanes
        assert {n for r, n, o in got if o == "WRITE"} == {f"p.operator.{op}.decisions"}
        group = f"p.operator-{op}"
        assert {(n, o) for r, n, o in got if r == "GROUP"} == {(group, "READ"), (group, "DESCRIBE")}
        assert {o for _r, _n, o in got} == {"READ", "WRITE", "DESCRIBE"}


def test_no_name_is_granted_to_two_outside_principals_for_writing() -> None:
    writers: dict[str, set[str]] = {}
    for principal, ops in rights().items():
        for rtype, name, op in ops:
            if rtype == "TOPIC" and op in ("WRITE", "ALL") and principal != "User:pipeline":
                writers.setdefault(name, set()).add(principal)
    assert all(len(who) == 1 for who in writers.values()), writers


def test_the_pipeline_reads_inputs_writes_outputs_and_never_writes_inputs() -> None:
    got = rights()["User:pipeline"]
    assert ("TOPIC", "p.reports.*", "READ") in got and ("TOPIC", "p.reports.*", "WRITE") not in got
    for op in REGISTRY.operators:
        assert ("TOPIC", f"p.operator.{op}.decisions", "READ") in got
        assert ("TOPIC", f"p.operator.{op}.decisions", "WRITE") not in got
        assert ("TOPIC", f"p.operator.{op}.critical", "WRITE") in got
    assert {("TOPIC", "p.app*", "ALL"), ("GROUP", "p.app*", "READ"), ("TRANSACTIONAL_ID", "p.app*", "WRITE"),
            ("CLUSTER", "kafka-cluster", "CREATE")} <= got


def test_the_sink_only_reads() -> None:
    got = rights()["User:sink"]
    assert {o for _r, _n, o in got} == {"READ", "DESCRIBE"}
    assert ("GROUP", "p.app-sink", "READ") in got
    assert not any(n.startswith("p.reports.") for _r, n, _o in got)


def test_bindings_one_per_operation_cluster_is_brokers_resource() -> None:
    from confluent_kafka.admin import ResourceType

    bindings = security.acl_bindings(REGISTRY, Topics(), "signalement")
    assert len(bindings) == sum(len(ops) for *_x, ops in security.rules(REGISTRY, Topics(), "signalement"))
    assert {b.restype for b in bindings if b.name == "kafka-cluster"} == {ResourceType.BROKER}
    assert all(b.host == "*" for b in bindings)


def test_passwords_are_generated_once_into_a_0600_file_and_env_wins(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    assert security.stored_password(settings, "pipeline") == ""  # reading never generates
    first = security.ensure_passwords(settings, ["pipeline", "reporter-tj-paris"])
    path = security.secrets_file(settings)
    assert path.parent == tmp_path / "secrets"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert security.ensure_passwords(settings, ["pipeline", "reporter-tj-paris"]) == first
    assert len(set(first.values())) == 2 and all(len(p) >= 24 for p in first.values())
    assert security.env_name("reporter-tj-paris") == "SIGNALEMENT_REPORTER_TJ_PARIS_PASSWORD"
    monkeypatch.setenv("SIGNALEMENT_REPORTER_TJ_PARIS_PASSWORD", "from-env")
    assert security.ensure_passwords(settings, ["reporter-tj-paris"]) == {"reporter-tj-paris": "from-env"}
    monkeypatch.setenv("SIGNALEMENT_SECRETS_DIR", str(tmp_path / "elsewhere"))
    assert Settings.from_env().secrets_dir == tmp_path / "elsewhere"


def test_a_kafka_user_turns_every_client_to_sasl_scram(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "security.protocol" not in Settings.from_env().confluent()
    settings = Settings.from_env()
    password = security.ensure_passwords(settings, ["operator-meta"])["operator-meta"]
    monkeypatch.setenv("SIGNALEMENT_KAFKA_USER", "operator-meta")
    monkeypatch.setenv("SIGNALEMENT_SECURE", "1")
    settings = Settings.from_env()
    assert settings.secure is True and settings.kafka_password == password  # from the secrets file
    conf = settings.confluent(**{"group.id": "g"})
    assert (conf["security.protocol"], conf["sasl.mechanisms"], conf["sasl.username"], conf["sasl.password"]) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-512", "operator-meta", password)
    creds = security.faust_credentials(settings)
    assert creds.username == "operator-meta" and creds.mechanism.value == "SCRAM-SHA-512"
    assert security.faust_credentials(Settings()) is None


def test_clickhouse_users_carry_only_a_sha256(tmp_path: Path) -> None:
    settings = Settings.from_env()
    hashes = security.clickhouse_users(settings)
    passwords = security.ensure_passwords(settings, ["clickhouse-analyst", "clickhouse-sink"])
    assert hashes == {"analyst": security.sha256_hex(passwords["clickhouse-analyst"]),
                      "sink": security.sha256_hex(passwords["clickhouse-sink"])}
