"""The `signalement` command: one sub-command per module, each with add_arguments() and run()."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module exposing `add_arguments(parser)` and `run(args) -> int`
COMMANDS = {
    "stack": ("streams.stack.manager", "the local Kafka + ClickHouse stack: up, down, status"),
    "topics": ("streams.admin", "create the contract's topics (idempotent)"),
    "security": ("streams.security", "Kafka SCRAM users and ACLs on a secure broker: apply, show"),
    "worker": ("streams.worker", "run the Faust pipeline worker"),
    "submit": ("clients.submit", "publish referrals from a JSON Lines or CSV file (reporters)"),
    "operator": ("clients.operator_cli", "consume an operator's lanes by strict priority and decide"),
    "simulate": ("clients.simulate", "realistic load: reporters, a crisis burst, operators deciding"),
    "db": ("sinks.migrate", "ClickHouse schema: migrate"),
    "sink": ("sinks.clickhouse", "run the ClickHouse sink"),
    "stats": ("sinks.stats", "print the analyst tables"),
    "report": ("sinks.report", "write the HTML report with charts"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signalement", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        p = sub.add_parser(name, help=help_text)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # import only the chosen sub-command's module (Faust is slow to import)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(chosen).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
