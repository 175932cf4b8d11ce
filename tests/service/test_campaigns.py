"""Campaigns over HTTP: create, read, page, change with optimistic locking, delete; problem+json errors."""

from __future__ import annotations


def test_a_campaign_is_created_read_and_listed(client, org):
    r = client.post("/api/v1/campaigns", json={"name": "Summer", "starts": "2026-06-01", "ends": "2026-12-31"},
                    headers=org.headers())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "Summer" and body["version"] == 1 and r.headers["etag"] == '"1"'
    got = client.get(f"/api/v1/campaigns/{body['id']}", headers=org.headers("approver"))
    assert got.json() == body
    listed = client.get("/api/v1/campaigns", headers=org.headers())
    assert [c["name"] for c in listed.json()["items"]] == ["Summer"]


def test_a_campaign_ending_before_it_starts_is_refused_naming_the_field(client, org):
    r = client.post("/api/v1/campaigns", json={"name": "Bad", "starts": "2026-06-01", "ends": "2026-05-01"},
                    headers=org.headers())
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["path"] == "/ends"
    assert client.get("/api/v1/campaigns", headers=org.headers()).json()["items"] == []


def test_an_unknown_field_and_a_wrong_type_are_422_with_their_paths(client, org):
    r = client.post("/api/v1/campaigns", json={"name": 5}, headers=org.headers())
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "/name"
    r = client.post("/api/v1/campaigns", json={"name": "x", "colour": "red"}, headers=org.headers())
    assert r.status_code == 422
    assert "colour" in r.json()["errors"][0]["message"]


def test_a_stale_edit_is_409_and_an_edit_without_a_version_is_428(client, org):
    c = client.post("/api/v1/campaigns", json={"name": "A"}, headers=org.headers()).json()
    url = f"/api/v1/campaigns/{c['id']}"
    assert client.patch(url, json={"objective": "revenue"}, headers=org.headers()).status_code == 428
    ok = client.patch(url, json={"objective": "revenue"}, headers=org.headers(**{"If-Match": '"1"'}))
    assert ok.status_code == 200 and ok.json()["version"] == 2
    stale = client.patch(url, json={"objective": "reach", "version": 1}, headers=org.headers())
    assert stale.status_code == 409 and stale.json()["type"].endswith("version_conflict")
    assert client.get(url, headers=org.headers()).json()["objective"] == "revenue"


def test_duplicate_names_conflict_and_paging_walks_every_campaign(client, org):
    for i in range(5):
        assert client.post("/api/v1/campaigns", json={"name": f"C{i}"}, headers=org.headers()).status_code == 201
    assert client.post("/api/v1/campaigns", json={"name": "C0"}, headers=org.headers()).status_code == 409
    names, cursor = [], None
    while True:
        page = client.get("/api/v1/campaigns", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=org.headers()).json()
        names += [c["name"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert names == [f"C{i}" for i in range(5)]


def test_without_a_key_401_with_a_wrong_role_403(client, org):
    assert client.get("/api/v1/campaigns").status_code == 401
    assert client.get("/api/v1/campaigns", headers={"Authorization": "Bearer hk_nope_nope"}).status_code == 401
    r = client.post("/api/v1/campaigns", json={"name": "X"}, headers=org.headers("approver"))
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    assert client.post("/api/v1/campaigns", json={"name": "X"}, headers=org.headers("service")).status_code == 403


def test_another_orgs_campaign_is_invisible_unchangeable_and_undeletable(client, org, other_org):
    c = client.post("/api/v1/campaigns", json={"name": "Mine"}, headers=org.headers()).json()
    url = f"/api/v1/campaigns/{c['id']}"
    assert client.get(url, headers=other_org.headers()).status_code == 404
    assert client.patch(url, json={"name": "Theirs", "version": 1}, headers=other_org.headers()).status_code == 404
    assert client.delete(url, headers=other_org.headers()).status_code == 404
    assert client.get("/api/v1/campaigns", headers=other_org.headers()).json()["items"] == []
    assert client.get(url, headers=org.headers()).json()["name"] == "Mine"


def test_an_idempotency_key_replays_the_first_response(client, org):
    h = org.headers(**{"Idempotency-Key": "k-1"})
    first = client.post("/api/v1/campaigns", json={"name": "Once"}, headers=h)
    again = client.post("/api/v1/campaigns", json={"name": "Once"}, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(client.get("/api/v1/campaigns", headers=org.headers()).json()["items"]) == 1
    other = client.post("/api/v1/campaigns", json={"name": "Different"}, headers=h)
    assert other.status_code == 422


def test_health_ready_and_schema_need_no_key(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    schema = client.get("/schema/openapi.json").json()
    ops = [op for path in schema["paths"].values() for op in path.values() if isinstance(op, dict)]
    assert ops and all("operationId" in op for op in ops)
