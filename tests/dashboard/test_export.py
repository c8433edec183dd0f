"""Export of the filtered set: CSV and JSON, streamed."""

import csv
import io
import json

import pytest
from django.http import StreamingHttpResponse

from tests.conftest import XSS

pytestmark = pytest.mark.django_db


def body(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_csv_export_streams_the_filtered_sorted_set(viewer_client, world):
    response = viewer_client.get("/loops/", {"flow_definition": "invoices", "sort": "name", "_export": "csv"})
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="human-loops-')
    rows = list(csv.reader(io.StringIO(body(response))))
    header, data = rows[0], rows[1:]
    assert header == [
        "Name", "Flow definition", "Status", "Created (UTC)", "Status changed", "Failure code", "Failure reason",
        "Deleted upstream", "ARN", "Flow definition ARN", "Output S3 URI",
    ]
    assert [r[0] for r in data] == ["inv-done", "inv-eu", "inv-fail", "inv-new", "inv-old"]
    fail = dict(zip(header, data[2], strict=True))
    assert fail["Failure reason"] == XSS  # raw value in a data file, not HTML
    assert fail["Flow definition"] == "invoices"
    assert fail["Flow definition ARN"] == world.fd_inv.arn
    assert fail["Created (UTC)"] == world.inv_fail.creation_time.isoformat()
    assert fail["ARN"] == world.inv_fail.arn


def test_json_export_is_an_array_of_objects(viewer_client, world):
    response = viewer_client.get("/loops/", {"status": "InProgress", "_export": "json"})
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/json"
    data = json.loads(body(response))
    assert [item["Name"] for item in data] == ["inv-new", "inv-old", "inv-eu"]
    assert data[0]["Status"] == "InProgress"
    assert data[0]["Deleted upstream"] is False
    assert data[0]["Output S3 URI"] == world.inv_new.output_s3_uri


def test_export_of_nothing_is_valid(viewer_client, world):
    response = viewer_client.get("/loops/", {"name": "zzz", "_export": "json"})
    assert json.loads(body(response)) == []
    response = viewer_client.get("/loops/", {"name": "zzz", "_export": "csv"})
    assert body(response).count("\n") == 1  # the header only


def test_export_ignores_the_page(viewer_client, world, monkeypatch):
    monkeypatch.setattr("loops.views.loop_list.PER_PAGE", 2)
    response = viewer_client.get("/loops/", {"page": "2", "deleted": "on", "_export": "json"})
    assert len(json.loads(body(response))) == 8


def test_export_reads_in_chunks_through_an_iterator(viewer_client, world, monkeypatch):
    # Flat memory: rows come from QuerySet.iterator(chunk_size=...), never a list of everything.
    import loops.services.loop_list as loop_list

    seen = []
    original = loop_list.iter_export_rows

    def spy(table, queryset, chunk_size=loop_list.EXPORT_CHUNK_SIZE):
        seen.append(queryset.query.is_sliced)
        return original(table, queryset, chunk_size=2)

    monkeypatch.setattr("loops.views.loop_list.iter_export_rows", spy)
    response = viewer_client.get("/loops/", {"_export": "csv"})
    assert body(response).count("\n") == 8
    assert seen == [False]
