"""Every migration and every catalogue query on a current ClickHouse (chdb, in process).

The same checks run on ClickHouse 18.16 in tests/integration/test_sink.py: together they keep
the SQL valid on both. Answers are compared with sinks.reference over sinks.sample's events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver.util.escape import escape_params

from sinks import queries, reference, report, rows, sample
from sinks.migrate import load_migrations, migrate

pytestmark = pytest.mark.modern
chdb = pytest.importorskip("chdb")
from chdb import session as chdb_session  # noqa: E402

DB = "signalement_modern"


def literal(value: Any) -> str:
    """A ClickHouse literal for one Python value of a row."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, bytes):
        return "'" + "".join(f"\\x{b:02x}" for b in value) + "'"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class ChdbClient:
    """Just enough of clickhouse_driver.Client for migrate() and the catalogue."""

    def __init__(self, path: Path) -> None:
        self.session = chdb_session.Session(str(path))

    def execute(self, query: str, params: Any = None, with_column_types: bool = False) -> Any:
        if isinstance(params, list):  # INSERT ... VALUES with rows as data
            query += " " + ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in params)
        elif params:  # client-side substitution, as clickhouse-driver does it
            query = query % escape_params(params, None)
        text = self.session.query(query, "JSONCompact").bytes()
        if not text.strip():
            return ([], []) if with_column_types else []
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:  # an error after some rows: chdb appends it to the output
            raise RuntimeError(text[-1000:].decode(errors="replace")) from exc
        data = [tuple(r) for r in doc["data"]]
        return (data, [(m["name"], m["type"]) for m in doc["meta"]]) if with_column_types else data

    def run(self, query: queries.Query, params: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        data, meta = self.execute(query.render(params), with_column_types=True)
        return [m[0] for m in meta], data


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> ChdbClient:
    client = ChdbClient(tmp_path_factory.mktemp("chdb"))
    assert migrate(client, DB) == ["0001_events", "0002_reactions", "0003_query_tables", "0004_overdue_resolutions"]
    for table, table_rows in sample.sample_rows().items():
        client.execute(rows.TABLES[table].insert_sql(DB), table_rows)
    client.execute(f"USE {DB}")
    return client


@pytest.fixture(scope="module")
def events() -> dict[str, list[dict[str, Any]]]:
    return sample.sample_events()


def test_migrations_are_recorded_and_idempotent(ch: ChdbClient) -> None:
    assert migrate(ch, DB) == []
    got = ch.execute(f"SELECT version FROM {DB}.schema_migrations FINAL ORDER BY version")
    assert got == [("0001",), ("0002",), ("0003",), ("0004",)]


def test_table_columns_match_the_rows_module(ch: ChdbClient) -> None:
    for name, table in rows.TABLES.items():
        cols = ch.execute(f"SELECT name FROM system.columns WHERE database = '{DB}' AND table = '{name}' "
                          "AND default_kind != 'MATERIALIZED' ORDER BY position")
        assert tuple(c[0] for c in cols) == table.columns, name


def test_materialized_times_are_utc_seconds(ch: ChdbClient) -> None:
    got = ch.execute(f"SELECT routed_at, toUnixTimestamp(routed_at_dt), decided_at, toUnixTimestamp(decided_at_dt) "
                     f"FROM {DB}.reactions FINAL WHERE decided_at IS NOT NULL LIMIT 5")
    assert got and all(int(r[0]) // 1000 == int(r[1]) and int(r[2]) // 1000 == int(r[3]) for r in got)


def test_final_hides_redelivered_and_superseded_rows(ch: ChdbClient, events: dict[str, list[dict[str, Any]]]) -> None:
    keys = {"referrals": ("referral_id",), "duplicates": ("referral_id",),
            "rejections": ("source_topic", "source_partition", "source_offset"),
            "decisions": ("referral_id", "operator_id", "acted_at", "action"),
            "overdue": ("referral_id", "deadline_kind"), "reactions": ("referral_id",),
            "reaction_windows": ("operator_id", "priority", "window_start")}
    for table, key in keys.items():
        distinct = {tuple(e[k] for k in key) for e in events[table]}
        assert len(events[table]) > len(distinct), f"the sample should redeliver some {table}"
        assert ch.execute(f"SELECT count() FROM {DB}.{table} FINAL") == [(len(distinct),)], table


def test_rejection_bytes_survive(ch: ChdbClient, events: dict[str, list[dict[str, Any]]]) -> None:
    got = ch.execute(f"SELECT hex(value), value_length, hex(key) FROM {DB}.rejections FINAL ORDER BY source_partition")
    want = [(e["value"].hex().upper(), len(e["value"]), e["key"].hex().upper() if e["key"] else None)
            for e in events["rejections"][:3]]
    assert [(r[0], int(r[1]), r[2]) for r in got] == want


def test_catalogue_headers() -> None:
    cat = queries.catalogue()
    assert set(cat) == set(reference.EXPECTED)
    for q in cat.values():
        assert q.title and q.description and set(q.param_help) == set(q.params)


@pytest.mark.parametrize("name", sorted(reference.EXPECTED))
def test_query_answers_match_the_reference(ch: ChdbClient, events: dict[str, list[dict[str, Any]]],
                                           name: str) -> None:
    query = queries.catalogue()[name]
    params = sample.params_for(query.params)
    columns, result = ch.run(query, params)
    expected = reference.EXPECTED[name](events, params)
    assert expected, f"the sample gives {name} nothing to check"
    assert reference.mismatches(columns, result, expected) == []


@pytest.mark.parametrize(("name", "given"), sample.VARIANTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(sample.VARIANTS)])
def test_query_answers_with_other_parameters(ch: ChdbClient, events: dict[str, list[dict[str, Any]]],
                                             name: str, given: dict[str, Any]) -> None:
    query = queries.catalogue()[name]
    params = {**sample.params_for(query.params), **given}
    columns, result = ch.run(query, params)
    expected = reference.EXPECTED[name](events, params)
    assert expected, f"the sample gives {name} {given} nothing to check"
    assert reference.mismatches(columns, result, expected) == []


def test_query_tables_backfill_rows_older_than_them(ch: ChdbClient, events: dict[str, list[dict[str, Any]]]) -> None:
    """Half of every table inserted before the query tables exist (their migration backfills it),
    the rest after (their materialized views): the catalogue answers as if they had always been."""
    db = "signalement_backfill"  # chdb: one session per process, so another database in it
    older = [m for m in load_migrations() if m.version < "0003"]
    assert migrate(ch, db, older) == ["0001_events", "0002_reactions"]
    for part in (0, 1):
        if part:
            assert migrate(ch, db) == ["0003_query_tables", "0004_overdue_resolutions"]
        for table, evs in events.items():
            half = evs[:len(evs) // 2] if part == 0 else evs[len(evs) // 2:]
            ch.execute(rows.TABLES[table].insert_sql(db), [rows.TABLES[table].row(e) for e in half])
    ch.execute(f"USE {db}")
    try:
        for name, query in queries.catalogue().items():
            params = sample.params_for(query.params)
            columns, result = ch.run(query, params)
            assert reference.mismatches(columns, result, reference.EXPECTED[name](events, params)) == [], name
    finally:
        ch.execute(f"USE {DB}")


def test_a_series_shared_by_two_pairs_stops_the_queries(ch: ChdbClient) -> None:
    """The queries group by series = cityHash64(operator_id, priority) and name them from
    reaction_series: two pairs under one series (a hash collision) fail the query, never merge."""
    db = "signalement_collision"
    migrate(ch, db)
    for table, table_rows in sample.sample_rows().items():
        ch.execute(rows.TABLES[table].insert_sql(db), table_rows)
    series = ch.execute(f"SELECT series FROM {db}.reaction_series FINAL LIMIT 1")[0][0]
    ch.execute(f"INSERT INTO {db}.reaction_series (series, operator_id, priority) VALUES", [(series, "other", "HIGH")])
    ch.execute(f"USE {db}")
    try:
        for name in ("decision_time_weekly", "decision_time_trend", "windows_recomputed"):
            query = queries.catalogue()[name]
            with pytest.raises(Exception, match="FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"):
                # CSV: no header a failed query could leave in the session's output
                ch.session.query(query.render(sample.params_for(query.params)), "CSV")
    finally:
        ch.execute(f"USE {DB}")


def test_queries_run_through_driver_style_parameters(ch: ChdbClient) -> None:
    query = queries.catalogue()["forged_labels"]
    assert queries.run(ch, query, {"now_ms": str(sample.NOW)}) == ch.run(query, sample.params_for(query.params))


def test_report_page_is_self_contained(ch: ChdbClient) -> None:
    page = report.build(ch, days=30, limit=10, now_ms=sample.NOW)
    assert page.count("<svg") == 4 and "no data" not in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    for name in report.TABLES:
        assert f"({name})" in page
