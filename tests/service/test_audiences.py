"""Audience groups over HTTP: filters in the rules' condition language, uploads by id/phone/e-mail, merges,
counts and members, snapshots, deletion rules and org isolation; on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import polars as pl
from sqlmodel import Session, select

from service.storage.audience import audience_frame, group_snapshot
from service.storage.tables import AudienceGroup, AudienceMember, Campaign, MessageAudience, MessageRow

PEOPLE = ("id,tier,points,phone,email,dnd\n"
          "c1,gold,120,+447911123401,a1@example.com,false\n"
          "c2,gold,40,+447911123402,a2@example.com,true\n"
          "c3,silver,300,+447911123403,a3@example.com,\n"
          "c4,bronze,10,+447911123404,a4@example.com,\n"
          "c5,,500,,a5@example.com,\n")


def seed(client, org) -> None:
    r = client.post("/api/v1/customers/bulk", content=PEOPLE.encode(), headers=org.headers(**{"Content-Type": "text/csv"}))
    assert r.status_code == 200, r.text


def make_filter(client, org, name: str, condition) -> dict:
    r = client.post("/api/v1/audience-groups", json={"name": name, "filter": condition}, headers=org.headers())
    assert r.status_code == 201, r.text
    return r.json()


def upload(client, org, name: str, csv: str, id_column: str = "id", filename: str = "list.csv", **form):
    data = {"name": name, "id_column": id_column, **{k: str(v).lower() if isinstance(v, bool) else v
                                                     for k, v in form.items()}}
    return client.post("/api/v1/audience-groups/upload", data=data, files={"file": (filename, csv.encode(), "text/csv")},
                       headers=org.headers())


def count(client, org, gid: int) -> int:
    r = client.get(f"/api/v1/audience-groups/{gid}/count", headers=org.headers("approver"))
    assert r.status_code == 200, r.text
    return r.json()["count"]


def members(client, org, gid: int) -> list[str]:
    out, cursor = [], None
    while True:
        page = client.get(f"/api/v1/audience-groups/{gid}/members",
                          params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=org.headers()).json()
        out += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def test_a_filter_group_counts_what_the_condition_selects(client, org):
    seed(client, org)
    # gold or more than 200 points, and not on the DND registry: c1 (gold), c3 (300), c5 (500); c2 is DND
    cond = {"all": [{"any": [{"field": "customer.tier", "eq": "gold"}, {"field": "customer.points", "gt": 200}]},
                    {"not": {"field": "customer.dnd", "eq": True}}]}
    g = make_filter(client, org, "valuable", cond)
    assert g["kind"] == "filter" and g["filter"] == cond
    assert count(client, org, g["id"]) == 3
    assert members(client, org, g["id"]) == ["c1", "c3", "c5"]
    page = client.get(f"/api/v1/audience-groups/{g['id']}/members", headers=org.headers()).json()
    assert page["items"][0]["attributes"]["tier"] == "gold" and page["items"][0]["attributes"]["points"] == 120


def test_a_bad_filter_is_422_pointing_at_the_bad_part_and_nothing_is_saved(client, org):
    cond = {"all": [{"field": "customer.tier", "eq": "gold"}, {"field": "customer.pointz", "gt": 3},
                    {"field": "customer.points", "gt": "many"}, {"field": "time.local_hour", "lt": 9}]}
    r = client.post("/api/v1/audience-groups", json={"name": "bad", "filter": cond}, headers=org.headers())
    assert r.status_code == 422
    errors = {e["path"]: e for e in r.json()["errors"]}
    assert errors["/filter/all/1/field"]["code"] == "unknown_field"
    assert "customer.points" in errors["/filter/all/1/field"]["message"]  # did you mean
    assert errors["/filter/all/2/gt"]["code"] == "type_mismatch"
    assert errors["/filter/all/3/field"]["code"] == "unknown_field"
    r = client.post("/api/v1/audience-groups", json={"name": "bad", "filter": {"feld": "customer.tier"}},
                    headers=org.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/filter"
    assert client.get("/api/v1/audience-groups", headers=org.headers()).json()["items"] == []


def test_an_upload_group_by_phone_normalises_numbers_and_keeps_members(client, org):
    seed(client, org)
    r = upload(client, org, "callers", "phone\n+44 7911 123401\n+447911123403\n+447911123403\n", id_column="phone")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "upload" and body["id_type"] == "phone" and body["members"] == 2
    assert members(client, org, body["id"]) == ["c1", "c3"]


def test_an_upload_whose_last_row_is_bad_stores_no_group_and_no_members(client, org, db_engine):
    seed(client, org)
    r = upload(client, org, "list", "email\na1@example.com\nA3@EXAMPLE.com\nnot-an-address\n", id_column="email")
    assert r.status_code == 422
    [item] = r.json()["errors"]
    assert item["path"] == "list.csv:4:email" and item["code"] == "invalid_handle"
    assert "not a valid address" in item["message"]
    assert client.get("/api/v1/audience-groups", headers=org.headers()).json()["items"] == []
    with Session(db_engine) as s:
        groups = s.exec(select(AudienceGroup.id).where(AudienceGroup.org_id == org.org_id)).all()
        assert groups == []


def test_keep_valid_upload_keeps_good_rows_and_reports_bad_ones_by_line(client, org):
    seed(client, org)
    r = upload(client, org, "some", "id,note\nc1,x\nnobody,y\n,z\nc4,w\n", keep_valid=True)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["members"] == 2 and body["rejected_count"] == 2
    assert [(e["path"], e["code"]) for e in body["rejected"]] == [("list.csv:3:id", "unknown_customer"),
                                                                   ("list.csv:4:id", "missing_id")]
    assert members(client, org, body["id"]) == ["c1", "c4"]


def test_a_parquet_upload_by_external_id(client, org):
    seed(client, org)
    buf = io.BytesIO()
    pl.DataFrame({"customer": ["c2", "c5"]}).write_parquet(buf)
    r = client.post("/api/v1/audience-groups/upload", data={"name": "pq", "id_column": "customer"},
                    files={"file": ("list.parquet", buf.getvalue(), "application/vnd.apache.parquet")},
                    headers=org.headers())
    assert r.status_code == 201, r.text
    assert members(client, org, r.json()["id"]) == ["c2", "c5"]


def test_merge_includes_and_excludes_and_a_cycle_is_refused(client, org):
    seed(client, org)
    gold = make_filter(client, org, "gold", {"field": "customer.tier", "eq": "gold"})         # c1 c2
    rich = make_filter(client, org, "rich", {"field": "customer.points", "gte": 300})         # c3 c5
    dnd = make_filter(client, org, "dnd", {"field": "customer.dnd", "eq": True})             # c2
    listed = upload(client, org, "listed", "id\nc4\nc5\n").json()                            # c4 c5
    r = client.post("/api/v1/audience-groups", json={"name": "merged", "include": [gold["id"], rich["id"], listed["id"]],
                                                     "exclude": [dnd["id"]]}, headers=org.headers())
    assert r.status_code == 201, r.text
    merged = r.json()
    assert members(client, org, merged["id"]) == ["c1", "c3", "c4", "c5"]
    outer = client.post("/api/v1/audience-groups", json={"name": "outer", "include": [merged["id"]],
                                                         "exclude": [listed["id"]]}, headers=org.headers()).json()
    assert count(client, org, outer["id"]) == 2
    # merged would include outer, which includes merged: refused, nothing changed
    r = client.patch(f"/api/v1/audience-groups/{merged['id']}", json={"include": [gold["id"], outer["id"]], "version": 1},
                     headers=org.headers())
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "/include/1" and r.json()["errors"][0]["code"] == "cycle"
    r = client.patch(f"/api/v1/audience-groups/{merged['id']}", json={"exclude": [merged["id"]], "version": 1},
                     headers=org.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "cycle"
    assert count(client, org, merged["id"]) == 4
    r = client.post("/api/v1/audience-groups", json={"name": "x", "include": [999999]}, headers=org.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/include/0"


def test_a_filter_edit_needs_the_version_and_changes_the_count(client, org):
    seed(client, org)
    g = make_filter(client, org, "gold", {"field": "customer.tier", "eq": "gold"})
    url = f"/api/v1/audience-groups/{g['id']}"
    assert client.patch(url, json={"filter": {"field": "customer.tier", "eq": "silver"}}, headers=org.headers()).status_code == 428
    r = client.patch(url, json={"filter": {"field": "customer.tier", "in": ["silver", "bronze"]}},
                     headers=org.headers(**{"If-Match": '"1"'}))
    assert r.status_code == 200 and r.json()["version"] == 2
    assert count(client, org, g["id"]) == 2
    assert client.patch(url, json={"name": "old", "version": 1}, headers=org.headers()).status_code == 409


def test_deleted_customers_are_never_counted_nor_members(client, org, herald, db_engine):
    seed(client, org)
    everyone = make_filter(client, org, "all", {"field": "customer.points", "exists": True})
    listed = upload(client, org, "listed", "id\nc1\nc2\n").json()
    assert client.delete("/api/v1/customers/c1", headers=org.headers()).status_code == 204
    assert count(client, org, everyone["id"]) == 4
    assert members(client, org, listed["id"]) == ["c2"]
    with Session(db_engine) as s:
        g = s.get(AudienceGroup, listed["id"])
        assert g is not None
        snap = {"include": [group_snapshot(s, g)], "exclude": []}
    assert audience_frame(db_engine, org.org_id, herald, snap).get_column("customer.id").to_list() == ["c2"]


def test_snapshots_are_self_contained_and_the_frame_is_include_minus_exclude(client, org, herald, db_engine):
    seed(client, org)
    gold = make_filter(client, org, "gold", {"field": "customer.tier", "eq": "gold"})
    listed = upload(client, org, "listed", "id\nc2\nc4\n").json()
    merged = client.post("/api/v1/audience-groups", json={"name": "m", "include": [gold["id"]], "exclude": [listed["id"]]},
                         headers=org.headers()).json()
    with Session(db_engine) as s:
        g = s.get(AudienceGroup, merged["id"])
        assert g is not None
        snap = group_snapshot(s, g)
    assert snap == {"kind": "merge", "group": merged["id"],
                    "include": [{"kind": "filter", "group": gold["id"], "filter": {"field": "customer.tier", "eq": "gold"}}],
                    "exclude": [{"kind": "upload", "group": listed["id"], "members": 2}]}
    frame = audience_frame(db_engine, org.org_id, herald, {"include": [snap, snap["exclude"][0]], "exclude": []})
    assert frame.get_column("customer.id").to_list() == ["c1", "c2", "c4"]  # de-duplicated, sorted
    frame = audience_frame(db_engine, org.org_id, herald, {"include": [snap["include"][0]], "exclude": [snap["exclude"][0]]})
    assert frame.get_column("customer.id").to_list() == ["c1"]
    assert frame.schema["customer.points"] == pl.Int64


def test_a_group_a_message_or_a_merge_uses_cannot_be_deleted(client, org, db_engine):
    seed(client, org)
    gold = make_filter(client, org, "gold", {"field": "customer.tier", "eq": "gold"})
    used = make_filter(client, org, "used", {"field": "customer.tier", "eq": "silver"})
    merged = client.post("/api/v1/audience-groups", json={"name": "m", "include": [gold["id"]]}, headers=org.headers()).json()
    with Session(db_engine) as s:
        c = Campaign(org_id=org.org_id, name="camp")
        s.add(c)
        s.flush()
        assert c.id is not None
        m = MessageRow(org_id=org.org_id, campaign_id=c.id, title="hello", author_id=org.user_ids["marketer"])
        s.add(m)
        s.flush()
        assert m.id is not None
        s.add(MessageAudience(message_id=m.id, group_id=used["id"], org_id=org.org_id, mode="include"))
        s.commit()
    r = client.delete(f"/api/v1/audience-groups/{used['id']}", headers=org.headers())
    assert r.status_code == 409 and r.json()["type"].endswith("in_use")
    assert client.delete(f"/api/v1/audience-groups/{gold['id']}", headers=org.headers()).status_code == 409
    assert client.delete(f"/api/v1/audience-groups/{merged['id']}", headers=org.headers()).status_code == 204
    assert client.delete(f"/api/v1/audience-groups/{gold['id']}", headers=org.headers()).status_code == 204
    listed = upload(client, org, "listed", "id\nc1\n").json()
    assert client.delete(f"/api/v1/audience-groups/{listed['id']}", headers=org.headers()).status_code == 204
    with Session(db_engine) as s:
        assert s.exec(select(AudienceMember).where(AudienceMember.group_id == listed["id"])).all() == []


def test_another_org_cannot_see_count_use_or_delete_my_groups(client, org, other_org):
    seed(client, org)
    seed(client, other_org)
    mine = make_filter(client, org, "gold", {"field": "customer.tier", "eq": "gold"})
    listed = upload(client, org, "listed", "id\nc1\n").json()
    for gid in (mine["id"], listed["id"]):
        for path in ("", "/count", "/members"):
            assert client.get(f"/api/v1/audience-groups/{gid}{path}", headers=other_org.headers()).status_code == 404
        assert client.delete(f"/api/v1/audience-groups/{gid}", headers=other_org.headers()).status_code == 404
        assert client.patch(f"/api/v1/audience-groups/{gid}", json={"name": "x", "version": 1},
                            headers=other_org.headers()).status_code == 404
    r = client.post("/api/v1/audience-groups", json={"name": "steal", "include": [mine["id"]]}, headers=other_org.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "not_found"
    assert client.get("/api/v1/audience-groups", headers=other_org.headers()).json()["items"] == []
    # their own gold filter counts only their customers; uploading my ids does not reach my rows
    theirs = make_filter(client, other_org, "gold", {"field": "customer.tier", "eq": "gold"})
    assert count(client, other_org, theirs["id"]) == 2
    assert client.delete("/api/v1/customers/c1", headers=other_org.headers()).status_code == 204
    assert members(client, org, listed["id"]) == ["c1"]
    assert count(client, org, mine["id"]) == 2


def test_upload_limits_types_and_roles(client, org):
    seed(client, org)
    big = "id\n" + "c1\n" * 800_000
    r = upload(client, org, "big", big)
    assert r.status_code == 413
    r = client.post("/api/v1/audience-groups/upload", data={"name": "x", "id_column": "id"},
                    files={"file": ("list.xml", b"<a/>", "application/xml")}, headers=org.headers())
    assert r.status_code == 415
    r = upload(client, org, "nocol", "ident\nc1\n")
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "missing_id_column"
    r = client.post("/api/v1/audience-groups", json={"name": "g", "filter": {"field": "customer.tier", "eq": "gold"}},
                    headers=org.headers("approver"))
    assert r.status_code == 403
    assert client.get("/api/v1/audience-groups", headers=org.headers("approver")).status_code == 200
    assert upload(client, org, "dup", "id\nc1\n").status_code == 201
    assert upload(client, org, "dup", "id\nc2\n").status_code == 409
