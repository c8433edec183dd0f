"""The loop page reads output.json as untrusted input: any malformed structure is one clear
message (never a 500), a file above A2I_OUTPUT_MAX_BYTES shows its metadata and a download
link, the content is rendered once, and several answers are compared side by side."""

import json
import time

import pytest

from tests.conftest import completed_loop_via_a2i

from .conftest import complete_synced, put_output, read_output

pytestmark = pytest.mark.django_db

MALFORMED = {
    "deep nesting": b'{"humanAnswers": [{"answerContent": {"a": ' + b"[" * 50_000 + b"]" * 50_000
    + b'}, "workerId": "w", "submissionTime": "2026-01-01T00:00:00Z"}]}',
    "humanAnswers of the wrong type": json.dumps({"humanAnswers": {"0": {"answerContent": {}}}}).encode(),
    "answers of the wrong type": json.dumps({"humanAnswers": ["cat", "dog"]}).encode(),
    "timestamp out of range": json.dumps(
        {"humanAnswers": [{"answerContent": {}, "workerId": "w", "submissionTime": "0001-01-01T00:00:00+01:00"}]}
    ).encode(),
    "timestamp past 9999": json.dumps(
        {"humanAnswers": [{"answerContent": {}, "workerId": "w", "submissionTime": "9999-12-31T23:59:59-05:00"}]}
    ).encode(),
    "not JSON": b"<html>proxy error</html>",
    "JSON but a list": b"[1, 2, 3]",
}
EXPECTED = {
    "deep nesting": "humanAnswers[0].answerContent is nested more than 64 levels deep.",
    "humanAnswers of the wrong type": "humanAnswers is an object, not a list.",
    "answers of the wrong type": "humanAnswers[0] is a string, not an object.",
    "timestamp out of range": "humanAnswers[0].submissionTime is out of range: &#x27;0001-01-01T00:00:00+01:00&#x27;.",
    "timestamp past 9999": "humanAnswers[0].submissionTime is out of range: &#x27;9999-12-31T23:59:59-05:00&#x27;.",
    "not JSON": "it is not valid JSON",
    "JSON but a list": "it is a list, not a JSON object.",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_output_is_a_clear_message_never_a_500(viewer_client, aws, case):
    loop = completed_loop_via_a2i(aws)
    put_output(aws, loop, MALFORMED[case])
    response = viewer_client.get(f"/loops/{loop.pk}/")
    content = response.content.decode()
    assert response.status_code == 200
    assert "The output cannot be read." in content
    assert EXPECTED[case] in content


def test_a_5_mb_output_gives_a_fast_small_page_with_its_metadata_and_a_download_link(viewer_client, aws):
    loop = completed_loop_via_a2i(aws)
    document = read_output(aws, loop)
    document["humanAnswers"][0]["answerContent"] = {"words": ["lorem ipsum dolor sit amet"] * 180_000}
    body = json.dumps(document).encode()
    assert len(body) > 5_000_000
    put_output(aws, loop, body)

    started = time.monotonic()
    response = viewer_client.get(f"/loops/{loop.pk}/")
    elapsed = time.monotonic() - started
    content = response.content.decode()
    assert response.status_code == 200
    assert elapsed < 1.5, elapsed
    assert len(response.content) < 60_000  # the metadata, not the content
    assert "lorem ipsum" not in content
    assert f"{len(body):,} bytes" in content and "A2I_OUTPUT_MAX_BYTES" in content
    assert f'href="/loops/{loop.pk}/output.json"' in content

    download = viewer_client.get(f"/loops/{loop.pk}/output.json")
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="{loop.name}-output.json"'
    assert b"".join(download.streaming_content) == body


def test_the_size_cap_is_a_setting(viewer_client, aws, settings):
    loop = completed_loop_via_a2i(aws)
    settings.A2I_OUTPUT_MAX_BYTES = 100
    content = viewer_client.get(f"/loops/{loop.pk}/").content.decode()
    assert "more than the 100\xa0bytes this page reads" in content
    settings.A2I_OUTPUT_MAX_BYTES = 1024 * 1024
    assert "Worker <a" in viewer_client.get(f"/loops/{loop.pk}/").content.decode()


def test_the_output_is_rendered_once(viewer_client, aws):
    loop = completed_loop_via_a2i(aws, answer={"label": "invoice", "note": "unique-marker-2718"})
    content = viewer_client.get(f"/loops/{loop.pk}/").content.decode()
    assert content.count("unique-marker-2718") == 1
    assert "Raw output.json" not in content and f"/loops/{loop.pk}/output.json" in content


def test_the_raw_download_of_a_missing_output_is_a_404_with_the_reason(viewer_client, aws):
    from .conftest import delete_output

    loop = completed_loop_via_a2i(aws)
    delete_output(aws, loop)
    response = viewer_client.get(f"/loops/{loop.pk}/output.json")
    assert response.status_code == 404
    assert "does not exist" in response.content.decode()


def test_the_raw_download_of_an_unknown_or_huge_id_is_a_404(viewer_client, db):
    assert viewer_client.get("/loops/999999/output.json").status_code == 404
    assert viewer_client.get("/loops/99999999999999999999/output.json").status_code == 404


def test_the_raw_download_needs_the_viewer_role(client, aws, db):
    from tests.conftest import make_user

    loop = completed_loop_via_a2i(aws)
    client.force_login(make_user("nobody"))
    assert client.get(f"/loops/{loop.pk}/output.json").status_code == 403


def test_several_answers_are_side_by_side_with_the_differing_fields_marked(viewer_client, aws, multi_fd):
    (loop,) = complete_synced(aws, multi_fd, [[
        {"answerContent": {"label": "cat", "box": {"x": 1, "y": 2}, "note": "ok"}, "workerId": "w-a"},
        {"answerContent": {"label": "dog", "box": {"x": 1, "y": 2}, "note": "ok"}, "workerId": "w-b"},
        {"answerContent": {"label": "cat", "box": {"x": 1, "y": 3}, "note": " ok "}, "workerId": "w-c"},
    ]])
    response = viewer_client.get(f"/loops/{loop.pk}/")
    comparison = response.context["output"].comparison
    assert comparison.workers == ["w-a", "w-b", "w-c"]
    assert comparison.agree is False and comparison.differing == 2
    rows = {row.path: (row.values, row.differs) for row in comparison.rows}
    assert rows["label"] == (["cat", "dog", "cat"], True)
    assert rows["box.y"] == (["2", "2", "3"], True)
    assert rows["box.x"] == (["1", "1", "1"], False)
    assert rows["note"][1] is False  # whitespace does not count
    assert [row.path for row in comparison.rows][:2] == ["label", "box.y"]  # differing first
    content = response.content.decode()
    assert "the reviewers disagree" in content and 'class="differs"' in content
