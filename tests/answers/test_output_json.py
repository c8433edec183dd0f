"""output.json is parsed as untrusted input: every structural surprise is one clear
"cannot be read" reason, never a crash; large contents are left out, not read whole."""

import json

import pytest

from loops.services.output_json import MAX_DEPTH, OutputUnreadable, content_hash, normalised_json, parse_output

ANSWER = {
    "answerContent": {"label": "cat"},
    "acceptanceTime": "2026-11-26T17:29:00.243Z",
    "submissionTime": "2026-11-26T17:29:12.243Z",
    "timeSpentInSeconds": 12.0,
    "workerId": "worker-7",
    "workerMetadata": {"identityData": {"identityProviderType": "Cognito", "issuer": "x", "sub": "sub-7"}},
}


def document(**answer_changes) -> dict:
    answer = {**ANSWER, **answer_changes}
    return {"flowDefinitionArn": "arn:fd", "humanLoopName": "l1", "inputContent": {"doc": 1}, "humanAnswers": [answer]}


def parse(value, *, chunk=7, **kwargs):
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    kwargs.setdefault("content_max_bytes", 10_000)
    # Small chunks: the parser must not care where the stream is cut.
    return parse_output([data[i : i + chunk] for i in range(0, len(data), chunk)], **kwargs)


def reason(value, **kwargs) -> str:
    with pytest.raises(OutputUnreadable) as caught:
        parse(value, **kwargs)
    return str(caught.value)


def test_a_well_formed_file_is_typed():
    output = parse(document(), keep_input=True)
    (answer,) = output.answers
    assert (output.flow_definition_arn, output.human_loop_name, output.input_content) == ("arn:fd", "l1", {"doc": 1})
    assert (answer.worker_id, answer.worker_sub, answer.identity_provider) == ("worker-7", "sub-7", "Cognito")
    assert answer.submission_time.isoformat() == "2026-11-26T17:29:12.243000+00:00"
    assert answer.acceptance_time.isoformat() == "2026-11-26T17:29:00.243000+00:00"
    assert (answer.time_spent_seconds, answer.content, answer.content_too_large) == (12.0, {"label": "cat"}, False)
    assert answer.content_hash == content_hash({"label": "cat"})


def test_input_content_is_skipped_unless_asked_for():
    assert parse(document()).input_content is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"humanAnswers": "nope"}, "humanAnswers is a string, not a list."),
        ({"humanAnswers": {"a": 1}}, "humanAnswers is an object, not a list."),
        ({"humanAnswers": [1]}, "humanAnswers[0] is a number, not an object."),
        ({"humanAnswers": [None]}, "humanAnswers[0] is null, not an object."),
        ([document()], "it is a list, not a JSON object."),
        ("just a string", "it is a string, not a JSON object."),
        ({"flowDefinitionArn": "x"}, "it has no humanAnswers."),
        (document(answerContent=["a"]), "humanAnswers[0].answerContent is a list, not an object."),
        (document(answerContent="cat"), "humanAnswers[0].answerContent is a string, not an object."),
        (document(workerId=7), "humanAnswers[0].workerId is not a string of 1 to 256 printable characters."),
        (document(workerId=""), "humanAnswers[0].workerId is missing."),
        (document(workerId="a\x00b"), "humanAnswers[0].workerId is not a string of 1 to 256 printable characters."),
        (document(workerId="w" * 257), "humanAnswers[0].workerId is not a string of 1 to 256 printable characters."),
        (document(workerId={"id": "w"}), "humanAnswers[0].workerId is an object, not a single value."),
        (document(timeSpentInSeconds=-1), "humanAnswers[0].timeSpentInSeconds is not a number of seconds (finite, 0 or more)."),
        (document(timeSpentInSeconds="12"), "humanAnswers[0].timeSpentInSeconds is not a number of seconds (finite, 0 or more)."),
        (document(timeSpentInSeconds=True), "humanAnswers[0].timeSpentInSeconds is not a number of seconds (finite, 0 or more)."),
        (document(workerMetadata=[1]), "humanAnswers[0].workerMetadata is a list, not an object."),
        ({"humanAnswers": [], "humanLoopName": ["x"]}, "humanLoopName is a list, not a single value."),
    ],
)
def test_structural_surprises_are_one_clear_reason(value, expected):
    assert reason(value) == expected


def test_a_missing_answer_content_or_submission_time_is_named():
    answer = dict(ANSWER)
    del answer["answerContent"]
    assert reason({"humanAnswers": [answer]}) == "humanAnswers[0] has no answerContent."
    assert reason(document(submissionTime=None)) == "humanAnswers[0].submissionTime is missing."


@pytest.mark.parametrize(
    "timestamp",
    [
        "0001-01-01T00:00:00+01:00",  # valid, but before year 1 once converted to UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 once converted to UTC
        "3000-01-01T00:00:00Z",  # representable, implausible
        "1900-01-01T00:00:00Z",
    ],
)
def test_timestamps_out_of_range_are_refused(timestamp):
    assert reason(document(submissionTime=timestamp)).startswith("humanAnswers[0].submissionTime is out of range")
    assert reason(document(acceptanceTime=timestamp)).startswith("humanAnswers[0].acceptanceTime is out of range")


@pytest.mark.parametrize("timestamp", ["yesterday", "2026-13-45T99:99:99Z", 1764177552, "2026-11-26T17:29:12Z" + "0" * 80])
def test_timestamps_that_are_not_timestamps_are_refused(timestamp):
    assert "submissionTime is not an ISO-8601 timestamp" in reason(document(submissionTime=timestamp))


def test_a_timestamp_without_offset_is_utc_and_acceptance_may_be_null():
    (answer,) = parse(document(submissionTime="2026-11-26T17:29:12", acceptanceTime=None)).answers
    assert answer.submission_time.isoformat() == "2026-11-26T17:29:12+00:00" and answer.acceptance_time is None


def test_deep_nesting_anywhere_is_refused_without_recursion():
    deep = b"[" * 100_000 + b"]" * 100_000
    in_content = b'{"humanAnswers": [{"answerContent": {"a": ' + deep + b'}, "workerId": "w", "submissionTime": "2026-01-01T00:00:00Z"}]}'
    assert reason(in_content, chunk=65536) == f"humanAnswers[0].answerContent is nested more than {MAX_DEPTH} levels deep."
    assert reason(b'{"extra": ' + deep + b', "humanAnswers": []}', chunk=65536) == f"extra is nested more than {MAX_DEPTH} levels deep."
    assert "nested more than" in reason(b'{"inputContent": ' + deep + b', "humanAnswers": []}', chunk=65536, keep_input=True)
    assert reason(b"[" * 1_000_000, chunk=65536) == "it is a list, not a JSON object."


def test_nesting_up_to_the_cap_is_fine():
    value = {}
    for _ in range(MAX_DEPTH - 4):  # top level, humanAnswers, the answer, answerContent: 4 levels
        value = {"x": value}
    (answer,) = parse(document(answerContent=value)).answers
    assert answer.content == value


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"humanAnswers": [', "it is not valid JSON (parse error: premature EOF)."),
        (b'{"humanAnswers": []} trailing', "it is not valid JSON (parse error: trailing garbage)."),
        (b"not json", "it is not valid JSON (lexical error: invalid string in json text.)."),
        (b"\xff\xfe", "it is not valid JSON (lexical error: invalid char in json text.)."),
        (b"", "it is not valid JSON (parse error: premature EOF)."),
    ],
)
def test_invalid_json_is_refused(data, expected):
    assert reason(data) == expected


def test_too_many_answers_are_refused():
    assert reason({"humanAnswers": [ANSWER] * 51}) == "humanAnswers has more than 50 answers."


def test_an_answer_content_above_the_cap_keeps_its_metadata_and_a_marker():
    big = {"items": [{"k": "v" * 20} for _ in range(20_000)]}
    output = parse(document(answerContent=big), content_max_bytes=256 * 1024, chunk=65536)
    (answer,) = output.answers
    assert (answer.content, answer.content_too_large, answer.content_hash) == (None, True, "")
    assert answer.content_bytes > 256 * 1024
    assert answer.worker_id == "worker-7" and answer.time_spent_seconds == 12.0


def test_the_read_limit_bounds_the_whole_file():
    data = json.dumps(document(answerContent={"text": "x" * 10_000})).encode()
    assert reason(data, read_limit=5_000) == "it is larger than 5,000 bytes, more than the dashboard reads."
    assert parse(data, read_limit=len(data)).answers


def test_normalisation_ignores_key_order_and_whitespace_only():
    assert normalised_json({"b": [1, 2.0], "a": " the  cat\n"}) == normalised_json({"a": "the cat", "b": [1.0, 2]})
    assert content_hash({"a": 1, "b": {"c": "x"}}) == content_hash(json.loads('{ "b" : {"c":"x"} , "a":1 }'))
    assert content_hash({"label": "cat"}) != content_hash({"label": "Cat"})
    assert content_hash({"label": "cat"}) != content_hash({"label": "cat", "note": ""})
    assert content_hash({"n": 1}) != content_hash({"n": 1.5})
