def test_login_page_renders(client):
    r = client.get("/login")
    assert r.status_code == 200
    assert b"Sign in" in r.data


def test_every_page_needs_login(client):
    r = client.get("/requests")
    assert r.status_code == 302 and "/login" in r.location
