"""The command line: serve and seed, and bad flags answered with usage (exit 2), never a traceback."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "a2i_local", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args", [
    [],
    ["serve", "--port", "abc"],
    ["serve", "--port", "70000"],
    ["serve", "--error-rate", "2"],
    ["serve", "--latency-ms", "-5"],
    ["serve", "--account-id", "12"],
    ["serve", "--no-such-flag"],
    ["seed", "--loops", "10", "--flow-definitions", "1"],
    ["seed", "--db", "x.sqlite3", "--loops", "many", "--flow-definitions", "1"],
    ["launch"],
])
def test_bad_flags_print_usage_and_exit_2(args):
    result = run_cli(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_help_lists_every_documented_flag():
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for flag in ["--host", "--port", "--db", "--workforce", "--throttle-tps", "--error-rate", "--latency-ms",
                 "--max-active-loops", "--event-webhook", "--s3-endpoint", "--region", "--account-id",
                 "--stop-delay", "--activation-delay", "--workforce-start-rate", "--no-strict-names"]:
        assert flag in result.stdout


def test_seed_writes_flow_definitions_and_loops_into_the_file(tmp_path):
    db = tmp_path / "seeded.sqlite3"
    result = run_cli("seed", "--db", str(db), "--flow-definitions", "2", "--loops", "500", "--random-seed", "3")
    assert result.returncode == 0, result.stderr
    assert "seeded 500 loops over 2 flow definitions" in result.stdout
    assert "flow-definition/seed-flow-2" in result.stdout
    import sqlite3
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM loops").fetchone()[0] == 500
    conn.close()


def test_serve_answers_on_the_port_it_prints_and_stops_on_sigterm(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "a2i_local", "serve", "--port", "0", "--db",
                                str(tmp_path / "s.sqlite3"), "--log-level", "WARNING"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "A2I Local listening on http://127.0.0.1:" in line
        url = line.split()[4]
        with urllib.request.urlopen(url + "/_local/health", timeout=10) as response:
            assert json.loads(response.read())["status"] == "ok"
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


@pytest.mark.parametrize("command", ["seed", "serve"])
def test_an_unusable_database_path_is_a_one_line_error_not_a_traceback(tmp_path, command):
    db = str(tmp_path / "no-such-dir" / "a2i.sqlite3")
    args = (["seed", "--db", db, "--flow-definitions", "1", "--loops", "1"] if command == "seed"
            else ["serve", "--port", "0", "--db", db])
    result = run_cli(*args)
    assert result.returncode == 1
    assert "a2i_local: cannot" in result.stderr and db in result.stderr
    assert "Traceback" not in result.stderr
