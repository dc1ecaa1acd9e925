"""`signalement stats`: run the analyst query catalogue and print each answer as a table.

    signalement stats                      # every query, defaults (last 30 days, now)
    signalement stats -q compliance_daily -p days=7
    signalement stats --list               # the catalogue: names, titles, parameters
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from sinks import display, queries
from sinks.migrate import check_database, client_for
from streams.config import Settings

console = Console()


def table_of(query: queries.Query, columns: list[str], rows: list[tuple[Any, ...]], limit: int) -> Table:
    shown = rows[:limit]
    caption = f"{len(shown)} of {len(rows)} rows" if len(rows) > limit else f"{len(rows)} rows"
    table = Table(title=f"{query.title}  [dim]({query.name})[/]", caption=caption, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if display.numeric(col) else "left")
    for row in shown:
        table.add_row(*(display.cell(c, v) for c, v in zip(columns, row, strict=True)))
    return table


def list_catalogue(cat: dict[str, queries.Query]) -> None:
    table = Table(title="Query catalogue (sinks/queries)", title_justify="left", show_lines=True)
    for col in ("name", "title", "parameters"):
        table.add_column(col)
    for q in cat.values():
        params = "\n".join(f"{k} = {v!r}: {q.param_help[k]}" for k, v in q.params.items())
        table.add_row(q.name, f"{q.title}\n[dim]{q.description}[/]", params)
    console.print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--query", action="append", help="query name (repeatable; default: all)")
    parser.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                        help="a parameter, for every chosen query that declares it (repeatable)")
    parser.add_argument("--limit", type=int, default=25, help="rows shown per table (25)")
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    parser.add_argument("--database", help="database (default: SIGNALEMENT_CLICKHOUSE_DATABASE or signalement)")


def run(args: argparse.Namespace) -> int:
    cat = queries.catalogue()
    if args.list:
        list_catalogue(cat)
        return 0
    unknown = [n for n in args.query or [] if n not in cat]
    if unknown:
        console.print(f"[red]unknown queries {unknown}[/]; known: {', '.join(cat)}")
        return 2
    given = queries.parse_assignments(args.param)
    settings = Settings.from_env()
    client = client_for(settings, database=check_database(args.database or settings.clickhouse_database))
    try:
        for name in args.query or list(cat):
            query = cat[name]
            params = {k: v for k, v in given.items() if k in query.params}
            columns, rows = queries.run(client, query, params)
            console.print(table_of(query, columns, rows, args.limit))
            console.print()
    finally:
        client.disconnect()
    return 0
