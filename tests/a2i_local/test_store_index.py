"""Scale: list pages come from the loops_list index (never a scan); seeding gives a realistic mix."""

import pytest

from a2i_local.config import Options
from a2i_local.store import Store


@pytest.fixture
def seeded_store(tmp_path):
    store = Store(Options(db=str(tmp_path / "seeded.sqlite3")))
    arns = store.seed(flow_definitions=3, loops=20_000, random_seed=7)
    yield store, arns
    store.close()


@pytest.mark.parametrize("sort_order", ["Descending", "Ascending"])
def test_list_query_plan_searches_the_loops_list_index(seeded_store, sort_order):
    store, _ = seeded_store
    plan = " ".join(store.explain_list(sort_order))
    assert "USING INDEX loops_list" in plan or "USING COVERING INDEX loops_list" in plan
    assert "SCAN" not in plan
    assert "TEMP B-TREE" not in plan  # the index order is the sort order: no sort step


def test_seed_creates_active_flow_definitions_and_every_status_and_failure_code(seeded_store):
    store, arns = seeded_store
    assert len(arns) == 3 and sorted(store.flow_definitions.active_arns()) == sorted(arns)
    mix = dict(((status, code), n) for status, code, n in store._db.execute(
        "SELECT status, failure_code, count(*) FROM loops GROUP BY 1, 2"))
    assert sum(mix.values()) == 20_000
    for key in [("Completed", None), ("InProgress", None), ("Stopped", None),
                ("Failed", "Expired"), ("Failed", "ValidationError"), ("Failed", "InternalError")]:
        assert mix.get(key, 0) > 0, key
    assert mix[("Completed", None)] > 20_000 / 2


def test_seeded_creation_times_span_the_last_30_days(seeded_store):
    store, _ = seeded_store
    oldest, newest = store._db.execute("SELECT min(creation_ms), max(creation_ms) FROM loops").fetchone()
    now = store.now_ms()
    assert now - oldest > 29 * 86_400_000 and now - oldest <= 30 * 86_400_000
    assert now - newest < 86_400_000


def test_seeded_loops_page_in_order_through_the_store(seeded_store):
    store, arns = seeded_store
    total, position, last = 0, None, None
    while True:
        summaries, position = store.list_human_loops(arns[0], after_ms=None, before_ms=None,
                                                     sort_order="Descending", max_results=100, position=position)
        total += len(summaries)
        if position is None:
            break
        assert last is None or position < last
        last = position
    expected = store._db.execute("SELECT count(*) FROM loops l JOIN flow_definitions f ON f.id = l.flow_definition_id "
                                 "WHERE f.arn = ?", (arns[0],)).fetchone()[0]
    assert total == expected
