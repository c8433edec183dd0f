"""A2I_SYNC_DISTRIBUTE: a full sync's creation-time ranges run as a Celery chord on a real
worker (started by the test, real Redis), and the result equals A2I."""

import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from loops.models import FlowDefinition, HumanLoop, SyncRun
from loops.services.discovery import discover_flow_definitions
from loops.services.sync_distributed import split_range
from tests.conftest import unique

from .conftest import list_a2i
from .test_celery_integration import celery_env, start, stop, wait_for  # noqa: F401 (celery_env is a fixture)

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
CALLBACK_DONE = re.compile(r"Task loops\.tasks\.finish_distributed_sync\[[^\]]+\] succeeded")


def test_split_range_cuts_whole_milliseconds_and_leaves_both_ends_open():
    now = timezone.now()
    ranges = split_range(now - timedelta(hours=1), now, 4)
    assert len(ranges) == 4 and ranges[0][0] is None and ranges[-1][1] is None
    assert all(hi == lo for (_, hi), (lo, _) in zip(ranges, ranges[1:], strict=False))
    assert all(bound.microsecond % 1000 == 0 for bound, _ in ranges[1:])


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_distributed_full_sync_runs_its_ranges_as_worker_tasks_and_equals_a2i(aws, celery_env, tmp_path):  # noqa: F811
    arn = aws.create_flow_definition(unique("spread"))
    now_ms = int(time.time() * 1000)
    names = [f"spread-{i}" for i in range(3000)]
    aws.store.insert_loops(arn, [(name, now_ms - 3_600_000 + i * 1000) for i, name in enumerate(names)])
    discover_flow_definitions([aws.region])
    fd = FlowDefinition.objects.get(arn=arn)
    # A stored loop that A2I no longer has, in the middle of the history: its range marks it.
    ghost_time = timezone.now() - timedelta(minutes=30)
    HumanLoop.objects.create(
        flow_definition=fd, name="ghost", arn=arn.replace(":flow-definition/", ":human-loop/").rsplit("/", 1)[0] + "/ghost",
        status="Completed", creation_time=ghost_time, first_seen_at=ghost_time, last_seen_at=ghost_time,
        status_changed_at=ghost_time,
    )
    env = {**celery_env, "A2I_SYNC_DISTRIBUTE": "true", "A2I_SYNC_SLICES": "4"}
    worker = start(["worker", "-n", f"spread-{unique('w')}@localhost", "--concurrency", "2", "--without-gossip",
                    "--without-mingle", "--loglevel", "INFO"], env, tmp_path / "worker.log")
    try:
        subprocess.run([CELERY, "-A", "dashboard", "call", "loops.tasks.sync_flow_definition", "--args", f"[{fd.pk}, true]"],
                       cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)

        def finished():
            return SyncRun.objects.filter(flow_definition=fd, kind="full").exclude(outcome="running").exists()

        wait_for(finished, 90, "the distributed sync's outcome")
        # The callback records the outcome before it returns, and the worker logs "succeeded"
        # after: stopping the worker at once could cut that line off (seen on a loaded CI run).
        wait_for(lambda: CALLBACK_DONE.search((tmp_path / "worker.log").read_text()), 30, "the callback's log line")
    finally:
        stop(worker)
    log = (tmp_path / "worker.log").read_text()
    run = SyncRun.objects.get(flow_definition=fd, kind="full")
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, (run.error, log[-3000:])
    # Four ranges, each a task of its own on the worker, then the chord's callback.
    assert len(re.findall(r"Task loops\.tasks\.sync_slice\[[^\]]+\] succeeded", log)) == 4, log[-3000:]
    assert CALLBACK_DONE.search(log)
    assert (run.loops_seen, run.created, run.marked_deleted) == (3000, 3000, 1)
    live = dict(HumanLoop.objects.filter(flow_definition=fd, deleted_upstream=False).values_list("name", "status"))
    assert live == {name: s["HumanLoopStatus"] for name, s in list_a2i(aws, arn).items()}
    assert HumanLoop.objects.get(flow_definition=fd, name="ghost").deleted_upstream
    fd.refresh_from_db()
    assert fd.sync_claimed_until is None and fd.last_full_sync_succeeded_at is not None
