# On PostgreSQL, the byte-order ("C") collation for the loop table's identifier columns:
# every index entry the sync inserts into loop_arn_unique, loop_name and the status and
# answers indexes compares these strings, and under the database's locale collation
# (C.UTF-8 here, en_US.UTF-8 elsewhere) each comparison goes through strcoll. They are
# ASCII (A2I's names are [a-z0-9-], ARNs and statuses likewise): byte order is C.UTF-8's
# order for them, and a plain one to sort by (en_US.UTF-8 would skip the hyphens). SQLite
# has no collation of that name: its columns stay as they are (RunPython, not db_collation
# on the model, which would emit it there too).
from django.db import migrations

COLUMNS = {"arn": 1024, "name": 63, "status": 16, "answers_state": 8}


def collate(collation: str):
    """A RunPython function giving COLUMNS `collation` on PostgreSQL (nothing elsewhere)."""

    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        schema_editor.execute(
            "ALTER TABLE loops_humanloop "
            + ", ".join(f'ALTER COLUMN {column} TYPE varchar({length}) COLLATE "{collation}"' for column, length in COLUMNS.items())
        )

    return run


class Migration(migrations.Migration):
    dependencies = [("loops", "0011_leaner_loop_inserts")]
    operations = [migrations.RunPython(collate("C"), collate("default"))]
