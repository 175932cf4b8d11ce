"""Tiny URLs: the shortener rewrites each channel's clickable links (never the unsubscribe link), the codes
are stored with their delivery, ``GET /t/{code}`` redirects only to a stored http(s) link and counts clicks,
unknown or malformed codes are 404, and a click moves the delivery to ``clicked``.

The send path here runs the worker's own steps (schedule, begin, decide a chunk, send a batch) in this
process without DBOS — the same functions the durable workflows call — and shortens each decided payload as
the run step will.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS
from service.http.app import create_app
from service.settings import Settings
from service.storage.db import transaction
from service.storage.links import click_counts, record_links
from service.storage.tables import Delivery, TinyLink
from service.worker import runs, sending
from service.worker.context import WorkerContext
from service.worker.links import new_code, shorten, track
from service.worker.outbox import LogTransport
from tests.service.conftest import FIELDS, TEST_SECRET_KEYS
from tests.service.test_messages_support import ok
from tests.service.worker.conftest import (
    FAST,
    SIGNED,
    approve,
    customers_csv,
    deliveries,
    outbox,
    send_runs,
    upload,
)

BASE = "https://go.herald.example"
UNSUB = "https://herald.example/u?c=c1&m=7&t=AbC_-"
EMAIL = {"subject": "Summer sale", "from": "offers@herald.example",
         "html": '<p>{{ vars.discount }} off: <a href="https://shop.example/sale?c={{ customer.id }}&amp;x=1">shop'
                 '</a> <a href=\'https://shop.example/terms\'>terms</a> <a href="mailto:help@shop.example">help</a>'
                 '</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>',
         "text": "{{ vars.discount }} off: https://shop.example/sale?c={{ customer.id }}&x=1. Terms "
                 "(https://shop.example/terms). Unsubscribe: {{ unsubscribe_url }}"}


def counter() -> Any:
    n = itertools.count(1)
    return lambda: f"code{next(n):07d}"


# -- the shortener --------------------------------------------------------------------------------------


def test_sms_links_get_one_code_per_distinct_url_and_keep_the_sentence_around_them():
    payload = {"to": "+919800000001", "text": "Sale! https://a.example/x?y=1, again https://a.example/x?y=1. "
                                              "And (https://b.example/p). ftp://c.example stays. Reply STOP"}
    out, pairs = shorten(payload, "sms", base=BASE, new_code=counter())
    assert pairs == [("code0000001", "https://a.example/x?y=1"), ("code0000002", "https://b.example/p")]
    assert out["text"] == (f"Sale! {BASE}/t/code0000001, again {BASE}/t/code0000001. And ({BASE}/t/code0000002). "
                           "ftp://c.example stays. Reply STOP")
    assert payload["text"].startswith("Sale! https://a.example")  # the input is not changed


def test_email_hrefs_and_text_are_rewritten_but_never_the_unsubscribe_link():
    payload = {"to": "c1@example.com", "subject": "s",
               "html": f'<a href="https://shop.example/p?a=1&amp;b=2">x</a><a href="{UNSUB.replace("&", "&amp;")}">u</a>'
                       '<a href="mailto:x@y.example">m</a><a href=javascript:alert(1)>j</a>',
               "text": f"See https://shop.example/p?a=1&b=2 — unsubscribe: {UNSUB}",
               "headers": {"List-Unsubscribe": f"<{UNSUB}>, <mailto:u@herald.example?subject=unsubscribe>",
                           "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}
    out, pairs = shorten(payload, "email", base=BASE + "/", new_code=counter())
    assert pairs == [("code0000001", "https://shop.example/p?a=1&b=2")]  # unescaped: the real URL
    assert out["html"] == (f'<a href="{BASE}/t/code0000001">x</a><a href="{UNSUB.replace("&", "&amp;")}">u</a>'
                           '<a href="mailto:x@y.example">m</a><a href=javascript:alert(1)>j</a>')
    assert out["text"] == f"See {BASE}/t/code0000001 — unsubscribe: {UNSUB}"
    assert out["headers"] == payload["headers"]


def test_other_channels_rewrite_their_clickable_fields_only():
    code = counter()
    push, p = shorten({"message": {"token": "t", "notification": {"title": "t", "body": "b", "image": "https://i.example/a.png"},
                                   "data": {"deep_link": "https://app.example/x"}}}, "push", base=BASE, new_code=code)
    assert push["message"]["data"]["deep_link"] == f"{BASE}/t/code0000001"
    assert push["message"]["notification"]["image"] == "https://i.example/a.png" and len(p) == 1
    viber, v = shorten({"type": "picture", "text": "see https://v.example", "media": "https://i.example/b.png",
                        "keyboard": {"Buttons": [{"ActionType": "open-url", "ActionBody": "https://v.example/buy"}]}},
                       "viber", base=BASE, new_code=code)
    assert viber["text"] == f"see {BASE}/t/code0000002" and viber["media"] == "https://i.example/b.png"
    assert viber["keyboard"]["Buttons"][0]["ActionBody"] == f"{BASE}/t/code0000003" and len(v) == 2
    line, _ = shorten({"messages": [{"type": "text", "text": "go https://l.example"},
                                    {"type": "image", "originalContentUrl": "https://i.example/c.png"}]},
                      "line", base=BASE, new_code=code)
    assert line["messages"][0]["text"] == f"go {BASE}/t/code0000004"
    assert line["messages"][1]["originalContentUrl"] == "https://i.example/c.png"
    wa, _ = shorten({"template": {"components": [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://i.example/d.png"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "https://w.example/o"}]}]}},
        "whatsapp", base=BASE, new_code=code)
    assert wa["template"]["components"][1]["parameters"][0]["text"] == f"{BASE}/t/code0000005"
    assert wa["template"]["components"][0]["parameters"][0]["image"]["link"] == "https://i.example/d.png"
    task, none = shorten({"script": "read https://x.example"}, "call_task", base=BASE, new_code=code)
    assert task == {"script": "read https://x.example"} and none == []


def test_codes_are_random_url_safe_and_long_enough():
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) >= 10 and c.replace("-", "").replace("_", "").isalnum() for c in codes)
    with pytest.raises(ValueError, match="http"):
        shorten({"text": "x"}, "sms", base="javascript:alert(1)")


# -- end to end: decided, shortened, sent, clicked -----------------------------------------------------


def worker_context(db_engine: Engine) -> Iterator[WorkerContext]:
    """A worker's context (signed e-mail links, the log transport), used without DBOS (for a fixture)."""
    signed = Herald.build(DEFAULT_PLUGINS, settings=SIGNED, fields_file=FIELDS, entry_points=False)
    log = LogTransport(db_engine)
    c = WorkerContext(db_engine, signed, {"sms": log, "email": log}, FAST)
    yield c
    c.loop.close()


def signed_app_client(database_url: str, db_engine: Engine, ctx: WorkerContext) -> Iterator[TestClient]:
    """A client of an app whose e-mail channel checks the worker's unsubscribe signatures (for a fixture)."""
    app = create_app(Settings(database_url=database_url, secret_keys=TEST_SECRET_KEYS), ctx.herald, engine=db_engine)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def ctx(db_engine: Engine) -> Iterator[WorkerContext]:
    """The worker's steps' context."""
    yield from worker_context(db_engine)


@pytest.fixture
def signed_client(database_url: str, db_engine: Engine, ctx: WorkerContext) -> Iterator[TestClient]:
    """A client of the app with the worker's signed e-mail channel."""
    yield from signed_app_client(database_url, db_engine, ctx)


def email_only(client: Any, org: Any, content: dict[str, Any] = EMAIL) -> Any:
    def edit(url: str) -> None:
        ok(client.post(f"{url}/creatives", json={"channel": "email", "content": content}, headers=org.headers()), 201)
        lock = ok(client.get(url, headers=org.headers()))["version"]
        ok(client.patch(url, json={"channels": ["email"], "version": lock}, headers=org.headers()))
    return edit


def decide(ctx: WorkerContext, client: Any, db_engine: Engine, org: Any, n: int, *, edit: Any,
           title: str = "Sale") -> tuple[int, int]:
    """An approved message's send run, begun and its first chunk decided (nothing sent): (message, run)."""
    upload(client, org, customers_csv(n))
    m = approve(client, db_engine, org, edit=edit, title=title)
    runs.schedule_approved(ctx)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None
    run_id = run.id
    runs.mark_started(ctx, run_id)  # no durable workflow will take this run: the test drives it
    assert runs.begin(ctx, run_id) == 1
    runs.prepare_chunk(ctx, run_id, 0)
    return m["id"], run_id


def shorten_run(db_engine: Engine, run_id: int) -> None:
    """What the run step does with tiny URLs on: each pending payload tracked (shortened, its links recorded)
    in the transaction that writes the payload."""
    with transaction(db_engine) as s:
        for d in s.exec(select(Delivery).where(Delivery.run_id == run_id, Delivery.status == "pending")).all():
            d.payload = track(s, d, base=BASE)
            s.add(d)


def send_all(ctx: WorkerContext, run_id: int) -> dict[str, int]:
    plan = sending.plan_pass(ctx, run_id, 0)
    tally: dict[str, int] = {}
    for _, ids in plan.batches:
        for k, v in sending.send_batch(ctx, run_id, ids, "test-token").items():
            tally[k] = tally.get(k, 0) + v
    return tally


def links_of(db_engine: Engine, key: str) -> dict[str, str]:
    with transaction(db_engine) as s:
        return {r.url: r.code for r in s.exec(select(TinyLink).where(TinyLink.key == key)).all()}


def test_sent_links_redirect_to_their_url_count_clicks_and_move_the_delivery_to_clicked(
        ctx, signed_client, db_engine, org):
    client = signed_client
    message_id, run_id = decide(ctx, client, db_engine, org, 3, edit=email_only(client, org))
    with transaction(db_engine) as s:  # a repeated step (the row as decided again) reuses the codes
        first = s.exec(select(Delivery).where(Delivery.run_id == run_id, Delivery.customer == "c0001")).one()
        decided = {"org_id": first.org_id, "key": first.key, "message_id": first.message_id, "run_id": run_id,
                   "channel": "email", "payload": first.payload}
    shorten_run(db_engine, run_id)
    with transaction(db_engine) as s:
        again = track(s, decided, base=BASE)
        stored = s.exec(select(Delivery.payload).where(Delivery.key == decided["key"])).one()
    assert again == stored
    # a fallback channel's payload of the same recipient gets the same code for the same link
    with transaction(db_engine) as s:
        sms = track(s, {**decided, "channel": "sms", "payload": {"text": "https://shop.example/terms STOP"}},
                    base=BASE)
    assert sms is not None and sms["text"] == f"{BASE}/t/{links_of(db_engine, decided['key'])['https://shop.example/terms']} STOP"
    assert send_all(ctx, run_id) == {"sent": 3}
    rows = {r.customer: r for r in deliveries(db_engine, run_id)}
    mine = rows["c0001"]
    codes = links_of(db_engine, mine.key)
    sale, terms = "https://shop.example/sale?c=c0001&x=1", "https://shop.example/terms"
    assert set(codes) == {sale, terms}
    (mail,) = outbox(db_engine, {mine.key})
    unsubscribe = mail.body["headers"]["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith("https://herald.example/u?c=c0001&")
    assert f'href="{BASE}/t/{codes[sale]}"' in mail.body["html"] and f"{BASE}/t/{codes[terms]}" in mail.body["text"]
    assert "https://shop.example" not in mail.body["html"] + mail.body["text"]
    assert 'href="mailto:help@shop.example"' in mail.body["html"]  # not a web link: left alone
    assert unsubscribe in mail.body["text"]  # the unsubscribe link is never shortened
    assert links_of(db_engine, rows["c0002"].key).keys() == {"https://shop.example/sale?c=c0002&x=1", terms}
    assert set(links_of(db_engine, rows["c0002"].key).values()).isdisjoint(codes.values())  # per recipient

    r = client.get(f"/t/{codes[sale]}", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == sale
    assert client.get(f"/t/{codes[sale]}", follow_redirects=False).headers["location"] == sale
    r = client.get(f"/t/{codes[terms]}?url=https://evil.example&next=https://evil.example", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == terms  # no target parameter exists
    statuses = {r.customer: r.status for r in deliveries(db_engine, run_id)}
    assert statuses == {"c0000": "sent", "c0001": "clicked", "c0002": "sent"}
    with transaction(db_engine) as s:
        counts = click_counts(s, org.org_id, message_id)
        assert counts == {"links": 6, "clicks": 3, "unique_clicks": 2, "recipients": 1}
        assert click_counts(s, org.org_id, message_id, run_id=run_id) == counts
        assert click_counts(s, org.org_id, message_id, run_id=run_id + 10_000)["links"] == 0
        link = s.exec(select(TinyLink).where(TinyLink.code == codes[sale])).one()
        assert link.clicks == 2 and link.first_clicked_at is not None and link.last_clicked_at is not None
        assert link.last_clicked_at >= link.first_clicked_at
    runs.finish(ctx, run_id)


def test_unknown_malformed_and_unsafe_codes_are_404_and_count_nothing(ctx, signed_client, db_engine, org):
    client = signed_client
    message_id, run_id = decide(ctx, client, db_engine, org, 1, edit=email_only(client, org))
    key = deliveries(db_engine, run_id)[0].key
    with transaction(db_engine) as s:
        record_links(s, org.org_id, key, message_id, run_id, [("okcode00001", "https://shop.example/a")])
        # a row written by anything else than the shortener, pointing somewhere unsafe, is never followed
        s.add(TinyLink(code="badcode0001", org_id=org.org_id, key=key, message_id=message_id, run_id=run_id,
                       url="javascript:alert(document.cookie)", url_hash="x"))
        s.add(TinyLink(code="badcode0002", org_id=org.org_id, key=key, message_id=message_id, run_id=run_id,
                       url="https://evil.example/\r\nSet-Cookie: a=b", url_hash="y"))
    for path in ("/t/nosuchcode1", "/t/badcode0001", "/t/badcode0002", "/t/short", "/t/" + "a" * 65,
                 "/t/okcode00001%2F..", "/t/..%2F..%2Fapi"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 404, (path, r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert client.get("/t/okcode00001", follow_redirects=False).status_code == 302
    with transaction(db_engine) as s:
        clicks = dict(s.exec(select(TinyLink.code, TinyLink.clicks).where(TinyLink.key == key)).all())
    assert clicks == {"okcode00001": 1, "badcode0001": 0, "badcode0002": 0}
    with pytest.raises(ValueError, match="http"):
        with transaction(db_engine) as s:
            record_links(s, org.org_id, key, message_id, run_id, [("anothercode1", "data:text/html,x")])
    # a delivery not sent yet stays pending when its link is clicked (only sent → clicked)
    assert deliveries(db_engine, run_id)[0].status == "pending"
    assert urlsplit(client.get("/t/okcode00001", follow_redirects=False).headers["location"]).netloc == "shop.example"
    runs.finish(ctx, run_id)
