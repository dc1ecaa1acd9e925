"""Fixtures for tests against the real local stack (Kafka + ClickHouse), started on demand.

Every test gets its own topic prefix and ClickHouse database, so tests (and engineers) can
share one running stack. Topics of a prefix are deleted after the test unless
SIGNALEMENT_KEEP_TOPICS=1 (to look at them afterwards).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from clickhouse_driver import Client

from streams.admin import create_topics, delete_topics
from streams.config import Settings
from streams.registry import Registry
from streams.stack.manager import ensure_up
from streams.topics import Topics

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs the stack: mark it `integration`."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Settings:
    """The running stack's settings (started now if it is not running; reused if it is)."""
    return ensure_up(Settings.from_env())


@pytest.fixture
def topic_prefix(stack: Settings) -> Iterator[str]:
    """A unique topic prefix like 't1a2b3c4d.'; its topics are deleted after the test."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    yield prefix
    if os.environ.get("SIGNALEMENT_KEEP_TOPICS") != "1":
        try:
            delete_topics(stack, [prefix])
        except Exception as exc:  # clean-up must not hide the test's own result
            print(f"could not delete topics {prefix}*: {exc}")


@pytest.fixture(scope="session")
def registry(stack: Settings) -> Registry:
    """The registry of config/ (or SIGNALEMENT_REPORTERS_PATH / _OPERATORS_PATH)."""
    return Registry.load(stack.reporters_path, stack.operators_path)


@pytest.fixture
def topics_factory(stack: Settings, registry: Registry) -> Callable[..., Topics]:
    """make(prefix, registry=None) creates the catalogue topics for prefix and returns their names."""

    def make(prefix: str, reg: Registry | None = None) -> Topics:
        create_topics(replace(stack, topic_prefix=prefix), reg or registry)
        return Topics(prefix=prefix, partitions=stack.partitions)

    return make


@pytest.fixture
def topics(topics_factory: Callable[..., Topics], topic_prefix: str) -> Topics:
    """The whole catalogue, created under this test's prefix."""
    return topics_factory(topic_prefix)


@pytest.fixture
def ch_client(stack: Settings) -> Iterator[Client]:
    """A clickhouse_driver Client to the stack (database `default`)."""
    client = Client(host=stack.clickhouse_host, port=stack.clickhouse_tcp_port, user=stack.clickhouse_user,
                    password=stack.clickhouse_password, connect_timeout=5, send_receive_timeout=30)
    yield client
    client.disconnect()


@pytest.fixture
def ch_database(ch_client: Client) -> Iterator[str]:
    """A fresh ClickHouse database `test_<hex>`, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    ch_client.execute(f"CREATE DATABASE {name}")
    yield name
    try:
        ch_client.execute(f"DROP DATABASE IF EXISTS {name}")
    except Exception as exc:  # clean-up must not hide the test's own result (a busy server may time out)
        print(f"could not drop database {name}: {exc}")


@pytest.fixture
def isolated_settings(stack: Settings, topic_prefix: str, ch_database: str, tmp_path: Path) -> Settings:
    """Settings of a pipeline of its own: own topic prefix, Faust app id, worker dir and database."""
    return replace(stack, topic_prefix=topic_prefix, app_id=f"{topic_prefix}app",
                   worker_dir=tmp_path / "worker", clickhouse_database=ch_database)
