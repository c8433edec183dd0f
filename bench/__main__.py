"""Run the benchmarks: `python -m bench [name ...] [--quick] [-- extra args]`.

Each benchmark is a module `bench/<name>.py` with `main(argv=None)` that prints a short
result and writes `bench/results/<name>.json`. They run one after another, each in its
own Python process, so one benchmark's memory (the sync's peak RSS is a target) and
crashes do not leak into the next. `--quick` passes small sizes for a short run; names
select a subset; a name without a module is reported and the others still run.
Exit status: 0 when every selected benchmark ran and exited 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# The order the issues list them in; any other bench/<name>.py runs after these.
KNOWN = ["a2i_local", "sync", "dashboard", "load", "actions"]
NOT_BENCHMARKS = {"__init__", "__main__", "common", "locustfile"}

# Small sizes for `--quick`, in each benchmark's own flags. A module missing here gets
# `--quick` when its source mentions that flag, else its defaults.
QUICK_ARGS = {
    "a2i_local": ["--loops", "20000", "--flow-definitions", "3", "--requests", "300",
                  "--boto3-seconds", "2", "--no-naive"],
}


def available() -> list[str]:
    found = sorted(path.stem for path in BENCH.glob("*.py") if path.stem not in NOT_BENCHMARKS)
    return [name for name in KNOWN if name in found] + [name for name in found if name not in KNOWN]


def quick_args(name: str) -> list[str]:
    if name in QUICK_ARGS:
        return QUICK_ARGS[name]
    return ["--quick"] if "--quick" in (BENCH / f"{name}.py").read_text() else []


def run_one(name: str, argv: list[str]) -> int:
    """Run bench/<name>.py's main(argv) in a fresh interpreter; return its exit status."""
    code = f"import sys; from bench.{name} import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(available())})")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a short run")
    args = parser.parse_args(argv)

    names = args.names or available()
    outcomes: list[tuple[str, str, float]] = []
    for name in names:
        if not (BENCH / f"{name}.py").exists():
            print(f"== {name}: no module bench/{name}.py (available: {', '.join(available()) or 'none'})", flush=True)
            outcomes.append((name, "missing", 0.0))
            continue
        module_args = (quick_args(name) if args.quick else []) + extra
        print(f"== {name}: python -m bench.{name} {' '.join(module_args)}".rstrip(), flush=True)
        started = time.monotonic()
        status = run_one(name, module_args)
        outcomes.append((name, "ok" if status == 0 else f"failed (exit {status})", time.monotonic() - started))

    print("\n== summary", flush=True)
    for name, outcome, seconds in outcomes:
        result = BENCH / "results" / f"{name}.json"
        where = f"  {result.relative_to(ROOT)}" if outcome == "ok" and result.exists() else ""
        print(f"  {name:<12} {outcome:<18} {seconds:7.1f} s{where}")
    return 0 if all(outcome == "ok" for _, outcome, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
