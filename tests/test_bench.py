"""The benchmarks still run (one quick round each): a change to the engine
must not leave them broken. Nothing here measures or asserts a time."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from tests.support.paths import ROOT

BENCH = ROOT / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "argv", "printed"),
    [
        ("bench_score", ["--rounds", "1", "--responses", "2"], "speed-up over naive"),
        ("bench_verify", ["mn-dhs-cotellic"], "mn-dhs-cotellic"),
        ("bench_dtr", ["--rounds", "5"], "$next-question"),
        ("bench_oversize", ["--rounds", "1", "--extra", "500"], "refused"),
        (
            "bench_load",
            ["--seconds", "1", "--clients", "1,4", "--workers", "1,2"],
            "determinations/s",
        ),
        ("bench_large_form", ["--sizes", "10", "30", "--rounds", "1"], "| 30 |"),
        ("bench_impact", ["--requests", "30", "--rounds", "1"], "requests/s"),
        ("bench_start", ["--rounds", "1"], "catalog from the cache"),
        ("bench_goals", ["--quick"], "| durable determinations/s (SQLite) | "),
    ],
)
def test_benchmark_runs(
    name: str, argv: list[str], printed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _load(name).main(argv)
    assert printed in capsys.readouterr().out
