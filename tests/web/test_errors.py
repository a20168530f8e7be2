"""Error pages in the app's style, JSON for API callers, and the nav by role."""
import pytest


def test_404_page_in_app_style(client):
    response = client.get("/no/such/page")
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and "Not found" in page and 'href="/static/app.css"' in page
    assert 'class="skip"' in page and "<main" in page


def test_json_errors_for_json_callers(client):
    response = client.get("/no/such/page", headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.get_json()["error"] == "Not found"


def test_400_with_reason(client, make_user, auth):
    make_user(email="root@example.com", role="admin")
    auth.login("root@example.com")
    response = client.get("/admin/dormant?sort=bogus")
    assert response.status_code == 400 and b"sort must be one of" in response.data


def test_500_page(app):
    app.config.update(PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    response = app.test_client().get("/boom")
    assert response.status_code == 500 and b"Something went wrong" in response.data and b"boom" not in response.data


@pytest.mark.parametrize(("role", "links", "absent"), [
    ("subscriber", ["/dashboard", "/contact"], ["/admin", "/admin/dormant", "/finance"]),
    ("finance", ["/finance", "/contact"], ["/admin", "/admin/dormant"]),
    ("admin", ["/admin", "/admin/dormant", "/admin/jobs", "/admin/outbox", "/admin/audit", "/finance"], []),
])
def test_nav_links_by_role(client, make_user, auth, role, links, absent):
    make_user(email="who@example.com", role=role)
    auth.login("who@example.com")
    page = client.get("/dashboard").get_data(as_text=True)
    for link in links:
        assert f'href="{link}"' in page
    for link in absent:
        assert f'href="{link}"' not in page
