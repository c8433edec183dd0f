"""A small known world of flow definitions and loops for the dashboard tests.

Times are relative to one fixed `now` (the real clock at fixture time), so window
filters and "age" figures are predictable.

    fd_inv      invoices  us-east-1  lifetime 1 h   last sync 1 min ago
      inv-new       InProgress  created now-30 min
      inv-old       InProgress  created now-50 min  (83 % of lifetime: near expiry)
      inv-done      Completed   created now-3 h     InProgress -> Completed observed now-2 h
      inv-fail      Failed      created now-2 d     Expired, reason "<script>alert(1)</script>"
    fd_rec      receipts  us-east-1  lifetime 1 d   never synced
      rec-done      Completed   created now-10 d    first seen Completed (no observed transition)
      rec-stopped   Stopped     created now-40 d
      rec-gone      Completed   created now-5 h     deleted upstream
    fd_inv_eu   invoices  eu-west-1  lifetime 1 d   last sync failing
      inv-eu        InProgress  created now-20 h
"""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from loops.models import FlowDefinition, HumanLoop, HumanLoopStatusChange, WorkerHeartbeat
from loops.services.stats import refresh_flow_definition_stats

ACCOUNT = "123456789012"
XSS = "<script>alert(1)</script>"


def make_fd(name, region, *, lifetime, now, **extra):
    return FlowDefinition.objects.create(
        arn=f"arn:aws:sagemaker:{region}:{ACCOUNT}:flow-definition/{name}",
        name=name,
        region=region,
        status="Active",
        creation_time=now - timedelta(days=60),
        output_s3_path=f"s3://out-{name}/results",
        task_title=f"Review {name}",
        task_count=1,
        task_availability_lifetime_seconds=lifetime,
        task_time_limit_seconds=600,
        **extra,
    )


def make_loop(fd, name, status, created, *, now, deleted=False, failure_code="", failure_reason="", output=True):
    region = fd.region
    return HumanLoop.objects.create(
        flow_definition=fd,
        name=name,
        arn=f"arn:aws:sagemaker:{region}:{ACCOUNT}:human-loop/{name}",
        status=status,
        creation_time=created,
        failure_code=failure_code,
        failure_reason=failure_reason,
        output_s3_uri=f"{fd.output_s3_path}/{fd.name}/{created:%Y/%m/%d/%H/%M/%S}/{name}/output.json" if output else "",
        first_seen_at=created,
        last_seen_at=now,
        status_changed_at=now,
        deleted_upstream=deleted,
        deleted_upstream_at=now if deleted else None,
    )


class World:
    pass


@pytest.fixture
def world(db):
    now = timezone.now()
    w = World()
    w.now = now
    w.fd_inv = make_fd("invoices", "us-east-1", lifetime=3600, now=now, last_sync_succeeded_at=now - timedelta(minutes=1))
    w.fd_rec = make_fd("receipts", "us-east-1", lifetime=86400, now=now)
    w.fd_inv_eu = make_fd(
        "invoices", "eu-west-1", lifetime=86400, now=now,
        last_sync_succeeded_at=now - timedelta(minutes=2), last_sync_error="AccessDenied: not allowed to list",
    )
    w.inv_new = make_loop(w.fd_inv, "inv-new", "InProgress", now - timedelta(minutes=30), now=now)
    w.inv_old = make_loop(w.fd_inv, "inv-old", "InProgress", now - timedelta(minutes=50), now=now)
    w.inv_done = make_loop(w.fd_inv, "inv-done", "Completed", now - timedelta(hours=3), now=now)
    w.inv_fail = make_loop(
        w.fd_inv, "inv-fail", "Failed", now - timedelta(days=2), now=now, failure_code="Expired", failure_reason=XSS
    )
    w.rec_done = make_loop(w.fd_rec, "rec-done", "Completed", now - timedelta(days=10), now=now)
    w.rec_stopped = make_loop(w.fd_rec, "rec-stopped", "Stopped", now - timedelta(days=40), now=now)
    w.rec_gone = make_loop(w.fd_rec, "rec-gone", "Completed", now - timedelta(hours=5), now=now, deleted=True)
    w.inv_eu = make_loop(w.fd_inv_eu, "inv-eu", "InProgress", now - timedelta(hours=20), now=now)

    HumanLoopStatusChange.objects.create(loop=w.inv_done, from_status="", to_status="InProgress", observed_at=now - timedelta(hours=3))
    HumanLoopStatusChange.objects.create(
        loop=w.inv_done, from_status="InProgress", to_status="Completed", observed_at=now - timedelta(hours=2)
    )
    HumanLoopStatusChange.objects.create(loop=w.rec_done, from_status="", to_status="Completed", observed_at=now - timedelta(days=1))
    WorkerHeartbeat.objects.create(worker="celery@test", last_beat_at=now - timedelta(seconds=5))
    for fd in (w.fd_inv, w.fd_rec, w.fd_inv_eu):
        refresh_flow_definition_stats(fd)
    return w


@pytest.fixture
def viewer(db):
    return User.objects.create_user("viewer", password="viewer-pass-123")


@pytest.fixture
def operator(db):
    user = User.objects.create_user("operator", password="operator-pass-123")
    user.user_permissions.add(*Permission.objects.filter(codename__in=["stop_humanloop", "delete_humanloop"]))
    return user


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


def names(response) -> list[str]:
    """Loop names in the rendered table, in order."""
    table = response.context["table"]
    return [row.record.name for row in table.paginated_rows]


ANSWER = {"label": "invoice", "confidence": 0.93, "fields": {"total": "12.50", "currency": "EUR"}}
INPUT = {"document": "s3://docs/invoice-17.pdf", "model_score": 0.41}


def completed_loop_via_a2i(aws, *, fd_name="dash-fd", loop_name="dash-loop-1", answer=ANSWER, input_content=INPUT):
    """Create a flow definition in A2I Local, start a loop, complete it (output.json really
    written to S3), then import everything with the real discovery and sync services."""
    import json

    from loops.services.sync import discover_flow_definitions, sync_flow_definition

    arn = aws.create_flow_definition(fd_name, task_availability_lifetime_seconds=7200)
    aws.client("sagemaker-a2i-runtime").start_human_loop(
        HumanLoopName=loop_name, FlowDefinitionArn=arn, HumanLoopInput={"InputContent": json.dumps(input_content)}
    )
    aws.complete(loop_name, answer=answer, worker_id="worker-7", time_spent_seconds=42.5)
    discover_flow_definitions([aws.region])
    fd = FlowDefinition.objects.get(arn=arn)
    run = sync_flow_definition(fd.pk, full=True)
    assert run.outcome == "succeeded", run.error
    return HumanLoop.objects.get(flow_definition=fd, name=loop_name)
