"""Unsubscribes and opt-outs: the e-mail's own unsubscribe link (RFC 8058 one-click) unsubscribes at once so
a delivery not yet sent is not sent; a GET only shows a confirmation form; a forged or edited link is 404 and
changes nothing; opt-out / opt-in through the API are audited, confined to the caller's org and checked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from plugins.channels.email import unsubscribe_token
from service.storage import audit
from service.storage.db import transaction
from service.storage.tables import Customer
from service.worker import runs
from service.worker.context import WorkerContext
from tests.service.test_links import decide, email_only, send_all, signed_app_client, worker_context
from tests.service.test_messages_support import API, ok
from tests.service.worker.conftest import SIGNED, deliveries, outbox, upload

SECRET = SIGNED["plugins.channels.email"]["unsubscribe_secret"]
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def ctx(db_engine: Engine) -> Iterator[WorkerContext]:
    """The worker's steps' context (without DBOS)."""
    yield from worker_context(db_engine)


@pytest.fixture
def signed_client(database_url: str, db_engine: Engine, ctx: WorkerContext) -> Iterator[TestClient]:
    """A client of the app with the worker's signed e-mail channel."""
    yield from signed_app_client(database_url, db_engine, ctx)


def subscriptions(db_engine: Any, org: Any, customer: str) -> dict[str, str]:
    with transaction(db_engine) as s:
        c = s.exec(select(Customer).where(Customer.org_id == org.org_id, Customer.external_id == customer)).one()
        return dict(c.subscriptions or {})


def link_of(payload: dict[str, Any]) -> str:
    """The path and query of the e-mail's List-Unsubscribe URL."""
    url = urlsplit(payload["headers"]["List-Unsubscribe"].split(",")[0].strip().strip("<>"))
    assert url.path == "/u"
    return f"{url.path}?{url.query}"


def test_one_click_unsubscribe_stops_the_email_not_yet_sent_and_the_next_run(ctx, signed_client, db_engine, org):
    client = signed_client
    _, run_id = decide(ctx, client, db_engine, org, 3, edit=email_only(client, org))
    pending = {d.customer: d for d in deliveries(db_engine, run_id)}
    assert {d.status for d in pending.values()} == {"pending"} and {d.channel for d in pending.values()} == {"email"}
    link = link_of(pending["c0001"].payload or {})

    page = client.get(link)  # what a mail scanner or a curious click does: nothing changes
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post"' in page.text and 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert page.headers["referrer-policy"] == "no-referrer" and "default-src 'none'" in page.headers["content-security-policy"]
    assert subscriptions(db_engine, org, "c0001") == {}

    r = client.post(link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert r.status_code == 200, r.text
    assert subscriptions(db_engine, org, "c0001") == {"email": "unsubscribed"}
    assert client.post(link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK).status_code == 200  # again
    # the recipient's own act is in the customer's consent history, once (the repeat changed nothing)
    trail = ok(client.get(f"{API}/customers/c0001/audit", headers=org.headers("approver")))
    (entry,) = trail["items"]
    assert (entry["action"], entry["from"], entry["to"], entry["actor"]) == ("unsubscribe", None, "unsubscribed", None)
    assert "by the recipient's one-click link of message" in entry["reason"]

    assert send_all(ctx, run_id) == {"sent": 2, "failed": 1}
    after = {d.customer: d for d in deliveries(db_engine, run_id)}
    stopped = after["c0001"]
    assert stopped.status == "failed" and stopped.sent_at is None
    assert "unsubscribed" in stopped.errors[0]["reason"]
    assert outbox(db_engine, {stopped.key}) == []
    assert len(outbox(db_engine, {after["c0000"].key, after["c0002"].key})) == 2
    runs.finish(ctx, run_id)

    # a later message with e-mail among its channels leaves the customer's e-mail out from the start
    _, second = decide(ctx, client, db_engine, org, 3, edit=email_only(client, org), title="Second sale")
    assert subscriptions(db_engine, org, "c0001") == {"email": "unsubscribed"}  # uploading again kept it
    assert send_all(ctx, second) == {"sent": 2}
    rows = {d.customer: d for d in deliveries(db_engine, second)}
    assert rows["c0001"].status == "excluded" and rows["c0001"].channel is None
    assert outbox(db_engine, {rows["c0001"].key}) == []
    runs.finish(ctx, second)


def test_a_forged_or_edited_unsubscribe_link_is_404_and_changes_nothing(ctx, signed_client, db_engine, org):
    client = signed_client
    _, run_id = decide(ctx, client, db_engine, org, 2, edit=email_only(client, org))
    rows = {d.customer: d for d in deliveries(db_engine, run_id)}
    link = link_of(rows["c0000"].payload or {})
    q = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    other_token = link_of(rows["c0001"].payload or {}).split("t=")[1]
    forged = [
        f"/u?c=c0001&m={q['m']}&t={q['t']}",  # someone else's id with my token
        f"/u?c=c0000&m={q['m']}&t={other_token}",
        f"/u?c=c0000&m={q['m']}&t={q['t'][:-1]}{'B' if q['t'].endswith('A') else 'A'}",
        f"/u?c=c0000&m={q['m']}&t=unsigned",
        f"/u?c=c0000&m={q['m']}",
        "/u",
        # a genuine token, under the org's secret, of a message that does not exist
        f"/u?c=c0000&m=m999999&t={unsubscribe_token(SECRET, 'c0000', 'm999999')}",
    ]
    for path in forged:
        assert client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK).status_code == 404, path
        assert client.get(path).status_code == 404, path
    r = client.post(link, content=b"unsubscribe=yes", headers=ONE_CLICK)
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "List-Unsubscribe"
    r = client.post(link, content=b"List-Unsubscribe=One-Click&pad=" + b"x" * 20_000, headers=ONE_CLICK)
    assert r.status_code == 413
    assert subscriptions(db_engine, org, "c0000") == {} and subscriptions(db_engine, org, "c0001") == {}
    # multipart, as some mailbox providers post it, works too
    r = client.post(link, files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200 and subscriptions(db_engine, org, "c0000") == {"email": "unsubscribed"}
    runs.finish(ctx, run_id)


def test_without_a_secret_no_link_unsubscribes(client, db_engine, org):
    """The default app's e-mail channel has no unsubscribe secret: every link is refused."""
    upload(client, org, "id,tier,email\nz1,gold,z1@example.com\n")
    token = unsubscribe_token(SECRET, "z1", "m1")
    assert client.post(f"/u?c=z1&m=m1&t={token}", content=b"List-Unsubscribe=One-Click",
                       headers=ONE_CLICK).status_code == 404
    assert client.get("/u?c=z1&m=m1&t=unsigned").status_code == 404
    assert subscriptions(db_engine, org, "z1") == {}


def test_opt_out_and_opt_in_are_audited_and_confined_to_the_callers_org(client, db_engine, org, other_org):
    upload(client, org, "id,tier,phone,email,subscription.email\nk1,gold,+919811111111,k1@example.com,hard_bounced\n")
    upload(client, other_org, "id,tier,phone\nk2,gold,+919822222222\n")
    url = f"{API}/customers/k1"
    r = ok(client.post(f"{url}/opt-out", json={"channel": "sms"}, headers=org.headers()))
    assert r == {"id": "k1", "channel": "sms", "subscription": "unsubscribed", "previous": None}
    assert subscriptions(db_engine, org, "k1") == {"email": "hard_bounced", "sms": "unsubscribed"}
    r = ok(client.post(f"{url}/opt-in", json={"channel": "sms"}, headers=org.headers("service")))
    assert r["subscription"] == "subscribed" and r["previous"] == "unsubscribed"
    assert subscriptions(db_engine, org, "k1")["sms"] == "subscribed"
    r = client.post(f"{url}/opt-in", json={"channel": "email"}, headers=org.headers("admin"))
    assert r.status_code == 409 and "hard_bounced" in r.json()["detail"]  # a dead address, not a consent
    r = client.post(f"{url}/opt-out", json={"channel": "fax"}, headers=org.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/channel"
    assert client.post(f"{url}/opt-out", json={"channel": "sms"}, headers=org.headers("approver")).status_code == 403
    assert client.post(f"{url}/opt-out", json={"channel": "sms"}).status_code == 401
    r = client.post(f"{API}/customers/k2/opt-out", json={"channel": "sms"}, headers=org.headers())
    assert r.status_code == 404  # the other org's customer looks like a missing one
    assert client.post(f"{API}/customers/nobody/opt-out", json={"channel": "sms"}, headers=org.headers()).status_code == 404
    assert subscriptions(db_engine, other_org, "k2") == {}
    assert subscriptions(db_engine, org, "k1") == {"email": "hard_bounced", "sms": "subscribed"}
    with transaction(db_engine) as s:
        cid = s.exec(select(Customer.id).where(Customer.org_id == org.org_id, Customer.external_id == "k1")).one()
        assert cid is not None
        trail = [(e.action, e.from_status, e.to_status, e.actor_id) for e in audit.entries(s, org.org_id, "customer", cid)]
    assert trail == [("opt_out", None, "unsubscribed", org.user_ids["marketer"]),
                     ("opt_in", "unsubscribed", "subscribed", org.user_ids["service"])]
    served = ok(client.get(f"{url}/audit", headers=org.headers()))
    assert [(e["action"], e["actor"]["id"]) for e in served["items"]] == [("opt_out", org.user_ids["marketer"]),
                                                                         ("opt_in", org.user_ids["service"])]
    assert client.get(f"{API}/customers/k2/audit", headers=org.headers()).status_code == 404  # the other org's
    assert client.get(f"{url}/audit").status_code == 401
