"""What every benchmark needs: its own PostgreSQL database, migrated, and a clean slate.

Each benchmark uses a database of its own (named in its module) so that runs do not
disturb each other or the development database.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (PostgreSQL's percentile_cont)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def ensure_database(url: str, tree: Path = ROOT) -> None:
    """Create the database of `url` if it does not exist, and migrate it (in a child process)
    with the migrations of the code in `tree` (default: this checkout)."""
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, str(tree / "manage.py"), "migrate", "--skip-checks", "-v0"],
        env={**os.environ, "DATABASE_URL": url}, check=True, cwd=tree,
    )


def empty_database(url: str) -> None:
    """Remove every row the product wrote: every table of the loops app (users stay)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(r"SELECT tablename FROM pg_tables WHERE tablename LIKE 'loops\_%'")]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def operator_user(username: str, password: str | None = None):
    """A user in the operator group (every page, the stop/delete controls), created if needed.

    Needs Django set up. The group is rebuilt from loops.permissions when a flushed
    database lost it.
    """
    from django.contrib.auth.models import Group, Permission, User

    from loops.permissions import GROUPS

    group, _ = Group.objects.get_or_create(name="operator")
    group.permissions.set(Permission.objects.filter(content_type__app_label="loops", codename__in=GROUPS["operator"]))
    user, _ = User.objects.get_or_create(username=username)
    if password is not None:
        user.set_password(password)
        user.save()
    user.groups.add(group)
    return user


class BackendCpu:
    """CPU seconds used by this database's PostgreSQL backends while the block runs.

    The sync writes on connections of its own that close before it returns, so the
    backends are sampled every 0.1 s (by their process title, "postgres: <user> <db> ...");
    a backend's CPU in its last 0.1 s of life can be missed. The parallel workers of their
    queries count too ("... parallel worker for PID <backend>", no database in the title),
    as far as a sample catches them: they live for one query.
    """

    def __init__(self, database: str | None):
        # None: every PostgreSQL process of the server (autovacuum, checkpointer, WAL writer too).
        self.marker = f" {database} " if database else ""
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()

    def _sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            leader = re.search(r"parallel worker for PID (\d+)", title)
            if title.startswith("postgres: ") and (self.marker in title or (leader and int(leader[1]) in self.last)):
                pid = int(entry.name)
                cpu = proc_cpu(pid)
                # Backends alive at the start count from then; new ones from zero.
                self.first.setdefault(pid, 0.0 if self._started else cpu)
                self.last[pid] = cpu

    def __enter__(self):
        self._started = False
        self._sample()
        self._started = True

        def loop():
            while not self._stop.wait(0.1):
                self._sample()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(self.last[pid] - self.first.get(pid, 0.0) for pid in self.last)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0.0 if unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
