"""The analyst query catalogue: sinks/queries/<name>.sql, each with a header comment.

Header format (the leading `--` lines of the file):

    -- title: One line
    -- description: A paragraph, continued on
    --   indented comment lines.
    -- param days = 30: what it means (the default's literal gives the type)

Parameters are written `%(name)s` in the SQL and substituted client-side with
clickhouse-driver's escaping (ClickHouse 18.16 has no server-side parameters). Table names
are unqualified: connect with the database as default (clickhouse-client -d signalement).
Every query reads versioned tables with FINAL (or argMax) and runs on 18.16 and current
ClickHouse alike (tests/unit/test_queries_modern.py, tests/integration/test_sink.py).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickhouse_driver.util.escape import escape_params

QUERIES_DIR = Path(__file__).resolve().parent / "queries"
PARAM_RE = re.compile(r"^param\s+([a-z_][a-z0-9_]*)\s*=\s*(.*?)\s*:\s*(.*)$")
USE_RE = re.compile(r"%\((\w+)\)s")
Param = int | float | str


@dataclass(frozen=True)
class Query:
    name: str
    title: str
    description: str
    params: dict[str, Param]
    param_help: dict[str, str]
    sql: str

    def bind(self, given: dict[str, Any] | None = None) -> dict[str, Param]:
        """Defaults overridden by `given`; strings (from a command line) coerced to the default's type."""
        out = dict(self.params)
        for key, value in (given or {}).items():
            if key not in self.params:
                raise KeyError(f"{self.name} has no parameter {key!r} (it has {sorted(self.params) or 'none'})")
            default = self.params[key]
            out[key] = type(default)(value) if isinstance(value, str) and not isinstance(default, str) else value
        return out

    def render(self, given: dict[str, Any] | None = None) -> str:
        """The SQL with parameters substituted, for engines without client-side substitution (chdb)."""
        return self.sql % escape_params(self.bind(given), None)


def _literal(text: str) -> Param:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        raise ValueError(f"parameter default {text!r} must be a number or a string")
    return value


def parse(path: Path) -> Query:
    """Read one catalogue file."""
    text = path.read_text()
    fields: dict[str, str] = {}
    params: dict[str, Param] = {}
    helps: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        body = line[2:].strip()
        m = PARAM_RE.match(body)
        if m:
            params[m.group(1)], helps[m.group(1)], last = _literal(m.group(2)), m.group(3), None
        elif line.startswith("--   ") and last:
            fields[last] += " " + body
        elif ":" in body:
            last, _, value = body.partition(":")
            fields[last.strip()] = value.strip()
            last = last.strip()
    used = set(USE_RE.findall(text))
    if used != set(params):
        raise ValueError(f"{path.name}: parameters used {sorted(used)} but declared {sorted(params)}")
    if "title" not in fields or "description" not in fields:
        raise ValueError(f"{path.name}: the header needs '-- title:' and '-- description:'")
    return Query(path.stem, fields["title"], fields["description"], params, helps, text)


def catalogue(directory: Path = QUERIES_DIR) -> dict[str, Query]:
    """Every query, by name, in file name order."""
    return {q.name: q for q in (parse(p) for p in sorted(directory.glob("*.sql")))}


def run(client: Any, query: Query, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one query with clickhouse-driver; return (column names, rows)."""
    result, columns = client.execute(query.sql, query.bind(params), with_column_types=True)
    return [c[0] for c in columns], result


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """['days=7', 'priority=HIGH'] -> {'days': '7', 'priority': 'HIGH'} (command-line parameters)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"parameter {item!r}: expected name=value")
        out[key.strip()] = value
    return out
