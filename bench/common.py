"""What every benchmark needs: its own PostgreSQL database, migrated, and a clean slate.

Each benchmark uses a database of its own (named in its module) so that runs do not
disturb each other or the development database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def ensure_database(url: str) -> None:
    """Create the database of `url` if it does not exist, and migrate it (in a child process)."""
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--skip-checks", "-v0"],
        env={**os.environ, "DATABASE_URL": url}, check=True, cwd=ROOT,
    )


def empty_database(url: str) -> None:
    """Remove every row the product wrote: every table of the loops app (users stay)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(r"SELECT tablename FROM pg_tables WHERE tablename LIKE 'loops\_%'")]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
