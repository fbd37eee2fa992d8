"""Every benchmark under ``bench/`` still loads: one that names something the product no longer
has fails here, not on the day its figures are wanted."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted(path.stem for path in (Path(__file__).resolve().parents[1] / "bench").glob("bench_*.py"))


def test_there_are_benchmarks_to_load():
    assert "bench_ledger_balances" in BENCHMARKS


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_benchmark_loads(name):
    module = importlib.import_module(f"bench.{name}")
    assert callable(module.main)
