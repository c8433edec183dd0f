"""The alerts page and its management (manage_alerts, the operator role), the overview banner,
badges, the admin, and make run's default rules."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from loops.models import AlertChannel, AlertRule, AlertState
from loops.services.alerts import evaluate_rules

from .conftest import add_loops, make_rule

pytestmark = pytest.mark.usefixtures("no_hold")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_operator_group_holds_manage_alerts_and_the_others_do_not(db):
    holders = set(Group.objects.filter(permissions__codename="manage_alerts").values_list("name", flat=True))
    assert holders == {"operator"}


def test_viewers_read_the_alerts_page_but_cannot_manage(fleet, viewer):
    make_rule("expiring")
    client = logged_in(viewer)
    page = client.get("/alerts/").content.decode()
    assert "expiring rule" in page and "New rule" not in page and "Send a test notification" not in page
    assert client.get("/alerts/rules/new/").status_code == 403
    rule = AlertRule.objects.get()
    assert client.post(f"/alerts/rules/{rule.pk}/mute/", {"duration": "1h"}).status_code == 403
    assert client.post(f"/alerts/rules/{rule.pk}/delete/").status_code == 403
    assert AlertRule.objects.filter(pk=rule.pk, muted_until__isnull=True).exists()


def test_an_operator_creates_a_rule_sees_it_fire_mutes_and_deletes_it(fleet, operator):
    add_loops(fleet.inv, "InProgress", 2, age=timedelta(minutes=55), now=fleet.now)
    channel = AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    client = logged_in(operator)
    response = client.post("/alerts/rules/new/", {
        "name": "Invoices expiring", "kind": "expiring", "flow_definition": fleet.inv.pk, "share": "0.75", "count": "2",
        "channels": [channel.pk], "enabled": "on",
    }, follow=True)
    assert "Rule “Invoices expiring” saved: it fires when at least 2 InProgress loop(s) older than 75%" in response.content.decode()
    rule = AlertRule.objects.get()
    assert (rule.flow_definition, rule.share, rule.count, list(rule.channels.all())) == (fleet.inv, 0.75, 2, [channel])

    client.post("/alerts/evaluate/")
    page = client.get("/alerts/").content.decode()
    assert "firing (1)" in page and "2 InProgress loop(s) older than 75%" in page
    assert AlertState.objects.get(rule=rule).status == "firing"

    client.post(f"/alerts/rules/{rule.pk}/mute/", {"duration": "4h"})
    rule.refresh_from_db()
    assert timedelta(hours=3, minutes=59) < rule.muted_until - timezone.now() <= timedelta(hours=4)
    assert "muted until" in client.get("/alerts/").content.decode()
    client.post(f"/alerts/rules/{rule.pk}/mute/", {"duration": "off"})
    rule.refresh_from_db()
    assert rule.muted_until is None

    client.post(f"/alerts/rules/{rule.pk}/delete/")
    assert not AlertRule.objects.exists() and not AlertState.objects.exists()


def test_bad_rule_and_channel_input_is_explained(fleet, operator):
    client = logged_in(operator)
    response = client.post("/alerts/rules/new/", {"name": "x", "kind": "expiring", "share": "80"})
    assert response.status_code == 200 and "A share is between 0 and 1" in response.content.decode()
    response = client.post("/alerts/channels/new/", {"name": "hook", "kind": "webhook", "target": "ftp://example.com/x"})
    assert "Give an http:// or https:// URL." in response.content.decode()
    response = client.post("/alerts/channels/new/", {"name": "mail", "kind": "email", "target": "ops@example.com, not an address"})
    assert "Give e-mail addresses separated by commas." in response.content.decode()
    assert not AlertRule.objects.exists() and not AlertChannel.objects.exists()
    client.post("/alerts/channels/new/", {"name": "mail", "kind": "email", "target": " ops@example.com,lead@example.com "})
    assert AlertChannel.objects.get().target == "ops@example.com,lead@example.com"


def test_the_overview_shows_a_banner_while_anything_fires(fleet, viewer):
    loop = add_loops(fleet.inv, "InProgress", 1, age=timedelta(minutes=55), now=fleet.now)[0]
    make_rule("expiring")
    client = logged_in(viewer)
    evaluate_rules(now=fleet.now)
    page = client.get("/").content.decode()
    assert "1 alert rule(s) firing: expiring rule." in page and 'href="/alerts/">See the alerts' in page
    loop.status = "Completed"
    loop.save()
    evaluate_rules(now=fleet.now + timedelta(minutes=1))
    assert "alert rule(s) firing" not in client.get("/").content.decode()


def test_badges_need_the_key_and_say_up_late_or_down(fleet, operator):
    client = logged_in(operator)
    page = client.get("/alerts/").content.decode()  # the badges section creates the keys
    fleet.inv.refresh_from_db()
    key = fleet.inv.badge_key
    assert len(key) >= 16 and f"/badges/invoices.svg?key={key}" in page

    anonymous = Client()
    assert anonymous.get("/badges/invoices.svg").status_code == 404
    assert anonymous.get("/badges/invoices.svg?key=wrong-key-of-enough-length").status_code == 404
    assert anonymous.get(f"/badges/receipts.svg?key={key}").status_code == 404  # another flow definition's key
    svg = anonymous.get(f"/badges/invoices.svg?key={key}")
    assert svg["Content-Type"] == "image/svg+xml" and b">up</text>" in svg.content
    assert anonymous.get(f"/badges/invoices.json?key={key}").json() == {
        "schemaVersion": 1, "label": "invoices", "message": "up", "color": "brightgreen"}

    add_loops(fleet.inv, "InProgress", 1, age=timedelta(minutes=55), now=fleet.now)
    assert anonymous.get(f"/badges/invoices.json?key={key}").json()["message"] == "late"
    make_rule("expiring", fd=fleet.inv)
    evaluate_rules(now=fleet.now)
    assert anonymous.get(f"/badges/invoices.json?key={key}").json() == {
        "schemaVersion": 1, "label": "invoices", "message": "down", "color": "red"}
    # A logged-in viewer reads it without a key.
    assert client.get("/badges/invoices.json").json()["message"] == "down"


def test_the_admin_lets_an_operator_manage_rules_and_read_the_records(fleet, operator):
    make_rule("expiring")
    client = logged_in(operator)
    for url in ("/admin/loops/alertrule/", "/admin/loops/alertrule/add/", "/admin/loops/alertchannel/add/",
                "/admin/loops/alertstate/", "/admin/loops/alerttransition/", "/admin/loops/alertdelivery/"):
        assert client.get(url).status_code == 200, url
    assert client.get("/admin/loops/alertstate/add/").status_code == 403


def test_default_rules_are_created_once(db):
    call_command("create_default_alerts", "--email", "me@example.com")
    call_command("create_default_alerts")
    assert sorted(AlertRule.objects.values_list("kind", flat=True)) == ["expiring", "sync_stale"]
    channel = AlertChannel.objects.get()
    assert channel.target == "me@example.com"
    assert all(list(rule.channels.all()) == [channel] for rule in AlertRule.objects.all())
