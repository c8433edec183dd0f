"""`python -m bench`: runs the selected benchmarks, reports missing ones, passes quick sizes they accept."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import available, quick_args

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_missing_benchmark_is_reported_not_a_crash():
    result = run_bench("no_such_benchmark")
    assert result.returncode == 1
    assert "no module bench/no_such_benchmark.py" in result.stdout
    assert re.search(r"no_such_benchmark\s+missing", result.stdout)
    assert "Traceback" not in result.stderr


def test_available_lists_modules_not_the_runner():
    names = available()
    assert "__main__" not in names and "__init__" not in names
    assert all((ROOT / "bench" / f"{name}.py").exists() for name in names)


@pytest.mark.parametrize("name", available())
def test_quick_sizes_are_flags_the_benchmark_accepts(name):
    code = f"import sys; from bench.{name} import main; main(['--help'])"
    usage = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    flags = [arg for arg in quick_args(name) if arg.startswith("--")]
    assert flags, f"`python -m bench --quick` would run bench/{name}.py at full size"
    for flag in flags:
        assert flag in usage, f"bench/{name}.py does not accept {flag}"
