"""`signalement report --out report.html`: one self-contained HTML page for analysts.

Charts (inline SVG, sinks.charts): time to decision p50 (solid) and p90 (dashed) per operator
over time, one chart per priority; compliance per operator and priority as bars. Then the
catalogue's tables. No JavaScript and no external asset: the page opens offline.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from sinks import charts, display, queries
from sinks.migrate import check_database, client_for
from streams.config import Settings

PRIORITIES = ("CRITICAL", "HIGH", "STANDARD")
BUCKETS = [m * 60_000 for m in (1, 5, 15, 60, 180, 360, 720, 1440, 10080)]
TABLES = ("compliance_by_operator", "decision_time_weekly", "live_windows", "open_overdue", "duplicate_rate",
          "forged_labels", "compliance_daily")
CSS = """body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 7px}th{background:#f3f3f3}td.n{text-align:right}
p.d{color:#555;font-size:13px;max-width:900px}.charts svg{display:block;margin:1em 0}"""


def pick_bucket(span_ms: int, points: int = 40) -> int:
    """The smallest bucket giving at most `points` buckets over the span."""
    return next((b for b in BUCKETS if span_ms / b <= points), BUCKETS[-1])


def decision_span(client: Any, since_ms: int, priority: str) -> int:
    """ms between the first and the last decision of a priority since `since_ms`."""
    rows = client.execute("SELECT min(decided_at), max(decided_at) FROM reactions FINAL WHERE decided_at IS NOT NULL "
                          "AND decided_at >= %(since)s AND priority = %(priority)s",
                          {"since": since_ms, "priority": priority})
    lo, hi = rows[0] if rows else (None, None)
    return int(hi - lo) if lo is not None and hi is not None else 0


def trend_chart(client: Any, cat: dict[str, queries.Query], priority: str, since_ms: int) -> str:
    bucket = pick_bucket(max(decision_span(client, since_ms, priority), 1))
    columns, rows = queries.run(client, cat["decision_time_trend"],
                                {"bucket_ms": bucket, "priority": priority, "since_ms": since_ms})
    by_op: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        rec = dict(zip(columns, row, strict=True))
        by_op.setdefault(rec["operator_id"], []).append(rec)
    series = []
    for i, (op, recs) in enumerate(sorted(by_op.items())):
        color = charts.PALETTE[i % len(charts.PALETTE)]
        series.append(charts.Series(f"{op} p50", color, [(r["bucket_start"], r["p50_ms"]) for r in recs]))
        series.append(charts.Series(f"{op} p90", color, [(r["bucket_start"], r["p90_ms"]) for r in recs], dashed=True))
    title = f"Time to decision, {priority} (per {display.duration(bucket)})"
    return charts.line_chart(title, series, lambda x: display.instant(int(x))[5:], display.duration)


def compliance_chart(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    recs = [dict(zip(columns, r, strict=True)) for r in rows]
    groups = sorted({r["operator_id"] for r in recs})
    # compliance is NULL while nothing is due yet: no bar rather than a zero
    values = {(r["operator_id"], r["priority"]): float(r["compliance"]) for r in recs if r["compliance"] is not None}
    return charts.bar_chart("Compliance (decided on time / due) per operator and priority", groups,
                            [p for p in PRIORITIES if any(k[1] == p for k in values)], values)


def html_table(query: queries.Query, columns: list[str], rows: list[tuple[Any, ...]], limit: int) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(
        f'<td class="{"n" if display.numeric(c) else ""}">{escape(display.cell(c, v))}</td>'
        for c, v in zip(columns, row, strict=True)) + "</tr>" for row in rows[:limit])
    more = f"<p class='d'>{len(rows) - limit} more rows not shown.</p>" if len(rows) > limit else ""
    if not rows:
        more = "<p class='d'>No rows.</p>"
    return (f"<h2>{escape(query.title)} <small>({escape(query.name)})</small></h2>"
            f"<p class='d'>{escape(query.description)}</p><table><tr>{head}</tr>{body}</table>{more}")


def build(client: Any, days: int = 30, limit: int = 50, now_ms: int = 0) -> str:
    """The whole page, from the catalogue's answers."""
    cat = queries.catalogue()
    clock = now_ms or int(datetime.now(UTC).timestamp() * 1000)
    since = clock - days * 86_400_000
    shared = {"days": days, "now_ms": now_ms, "at_ms": now_ms}
    answers = {}
    for name in TABLES:
        q = cat[name]
        answers[name] = queries.run(client, q, {k: v for k, v in shared.items() if k in q.params})
    parts = [trend_chart(client, cat, p, since) for p in PRIORITIES]
    parts.append(compliance_chart(*answers["compliance_by_operator"]))
    tables = "".join(html_table(cat[n], *answers[n], limit) for n in TABLES)
    stamp = display.instant(clock)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>signalement report</title>"
            f"<style>{CSS}</style></head><body><h1>Referrals: reaction times and compliance</h1>"
            f"<p class='d'>Generated {stamp} UTC over the last {days} days. Times to decision run from the moment"
            f" the referral reached the operator's lane; percentiles are nearest-rank. Solid: p50, dashed: p90."
            f"</p><div class='charts'>{''.join(parts)}</div>{tables}</body></html>")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="output file (report.html)")
    parser.add_argument("--days", type=int, default=30, help="days to cover (30)")
    parser.add_argument("--limit", type=int, default=50, help="rows shown per table (50)")
    parser.add_argument("--now-ms", type=int, default=0, help="the clock, ms since the epoch (0: now)")
    parser.add_argument("--database", help="database (default: SIGNALEMENT_CLICKHOUSE_DATABASE or signalement)")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    client = client_for(settings, database=check_database(args.database or settings.clickhouse_database))
    try:
        page = build(client, args.days, args.limit, args.now_ms)
    finally:
        client.disconnect()
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out} ({len(page) // 1024} KiB)")
    return 0
