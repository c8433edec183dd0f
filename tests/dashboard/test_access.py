"""Login is required everywhere; the login page works; logout is a POST."""

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def pages(world):
    return [
        "/",
        "/loops/",
        "/loops/?_export=csv",
        f"/loops/{world.inv_new.pk}/",
        "/flow-definitions/",
        f"/flow-definitions/{world.fd_inv.pk}/",
        "/sync/",
    ]


def test_anonymous_requests_redirect_to_login(client, world):
    for url in pages(world):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url
    response = client.post(f"/loops/{world.inv_new.pk}/refresh/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_logged_in_viewer_sees_every_page(viewer_client, world):
    for url in pages(world):
        assert viewer_client.get(url).status_code == 200, url


def test_login_page_logs_in_and_logout_is_post(client, viewer):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    content = page.content.decode()
    assert '<label for="id_username">Username</label>' in content
    assert '<label for="id_password">Password</label>' in content
    bad = client.post("/accounts/login/", {"username": viewer.username, "password": "wrong"})
    assert bad.status_code == 200 and "Please enter a correct username and password" in bad.content.decode()
    good = client.post("/accounts/login/", {"username": viewer.username, "password": PASSWORD, "next": "/loops/"})
    assert good.status_code == 302 and good["Location"] == "/loops/"
    assert client.get("/").status_code == 200
    assert 'action="/accounts/logout/"' in client.get("/").content.decode()
    assert client.post("/accounts/logout/").status_code in (200, 302)
    assert client.get("/").status_code == 302
