"""placeholder"""
from __future__ import annotations

import argparse

from bench.common import Result


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass
def run(args: argparse.Namespace) -> Result:
    raise NotImplementedError
