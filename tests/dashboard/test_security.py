"""Login throttling, the Content-Security-Policy, and the small things a browser asks for."""

import re
from pathlib import Path

import pytest
from django.test import Client

from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def login(client, username, password, **headers):
    return client.post("/accounts/login/", {"username": username, "password": password}, **headers)


# --- login throttling --------------------------------------------------------------


def test_wrong_passwords_in_a_row_lock_the_login_with_a_clear_message(db, settings):
    make_user("wendy", group="viewer")
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = login(client, "wendy", "wrong")
        assert response.status_code == 200 and "Please enter a correct username and password" in response.content.decode()

    response = login(client, "wendy", "wrong")

    assert response.status_code == 429
    html = response.content.decode()
    assert "Too many failed login attempts" in html
    assert f"after {settings.AXES_FAILURE_LIMIT} wrong passwords" in html and "Try again in 15 min" in html
    # Locked means locked: the right password is refused too, and no session is opened.
    response = login(client, "wendy", PASSWORD)
    assert response.status_code == 429
    assert client.get("/").status_code == 302


def test_a_successful_login_resets_the_count(db, settings):
    make_user("wendy", group="viewer")
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "wendy", "wrong")
    assert login(client, "wendy", PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "wendy", "wrong").status_code == 200
    assert login(client, "wendy", PASSWORD).status_code == 302


def test_behind_a_proxy_the_lock_out_follows_the_forwarded_client_address(db, settings):
    settings.TRUSTED_PROXIES = 1
    make_user("wendy", group="viewer")
    proxy = {"REMOTE_ADDR": "10.0.0.2"}  # every request reaches Django from the proxy
    attacker = {**proxy, "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(Client(), "wendy", "wrong", **attacker)

    assert login(Client(), "wendy", PASSWORD, **attacker).status_code == 429
    # A forged entry on the left does not dodge it: the proxy appended the real address.
    forged = {**proxy, "HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.9"}
    assert login(Client(), "wendy", PASSWORD, **forged).status_code == 429
    # Another client behind the same proxy is not locked out.
    colleague = {**proxy, "HTTP_X_FORWARDED_FOR": "203.0.113.44"}
    assert login(Client(), "wendy", PASSWORD, **colleague).status_code == 302


# --- Content-Security-Policy -------------------------------------------------------


def test_every_page_carries_a_policy_that_allows_only_the_apps_own_scripts_and_styles(viewer_client, world):
    response = viewer_client.get("/loops/")
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert "Content-Security-Policy" in Client().get("/accounts/login/")


TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: str(path.relative_to(ROOT / "templates")))
def test_no_template_has_an_inline_script_a_style_attribute_or_an_event_handler(template):
    text = template.read_text()
    inline_scripts = [tag for tag in re.findall(r"<script\b[^>]*>", text) if "src=" not in tag]
    assert not inline_scripts, "move the script to static/js/"
    assert not re.search(r"\sstyle=", text), "use a class in static/css/app.css"
    assert not re.search(r"\son[a-z]+=", text), "attach the handler from static/js/"
    # htmx evaluates a trigger filter `[...]` with eval, which the policy forbids.
    assert not re.search(r'hx-trigger="[^"]*\[', text)


def test_rendered_pages_have_no_inline_script(operator, world, client):
    client.force_login(operator)
    for url in ("/", "/loops/", f"/loops/{world.inv_new.pk}/", "/flow-definitions/", "/sync/", "/actions/audit/"):
        html = client.get(url).content.decode()
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert scripts and all("src=" in tag for tag in scripts), url
        assert " style=" not in html, url


# --- favicon -----------------------------------------------------------------------


def test_the_favicon_is_served_at_the_root_and_linked_from_every_page(viewer_client, world):
    response = Client().get("/favicon.ico")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert 'rel="icon"' in viewer_client.get("/").content.decode()
