"""The events' settings: off by default, a token long enough to be a secret, queue URLs as a list."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.platform.test_settings import load_settings


def test_events_are_off_by_default(monkeypatch):
    settings = load_settings(monkeypatch)
    assert settings["A2I_EVENTS_TOKEN"] == "" and settings["A2I_EVENTS_QUEUE_URLS"] == []


def test_a_short_token_is_refused(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="A2I_EVENTS_TOKEN must be at least 32 characters"):
        load_settings(monkeypatch, A2I_EVENTS_TOKEN="password")


def test_queue_urls_are_comma_separated(monkeypatch):
    east = "https://sqs.us-east-1.amazonaws.com/123456789012/a2i-events"
    west = "https://sqs.eu-west-1.amazonaws.com/123456789012/a2i-events"
    settings = load_settings(monkeypatch, A2I_EVENTS_QUEUE_URLS=f"{east}, {west}", A2I_EVENTS_TOKEN="t" * 32)
    assert settings["A2I_EVENTS_QUEUE_URLS"] == [east, west]
    assert settings["A2I_EVENTS_TOKEN"] == "t" * 32


@pytest.mark.parametrize("url, region", [
    ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"),
    ("https://ap-southeast-2.queue.amazonaws.com/123456789012/q", "ap-southeast-2"),
    ("http://127.0.0.1:5000/123456789012/q", "us-west-2"),  # a local SQS: the first of A2I_REGIONS
])
def test_the_region_of_a_queue_comes_from_its_url(settings, url, region):
    from loops.a2i import region_of_queue_url

    settings.A2I_REGIONS = ["us-west-2", "us-east-1"]
    assert region_of_queue_url(url) == region
