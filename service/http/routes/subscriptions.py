"""Unsubscribes and opt-outs.

* ``GET /u?c=…&m=…&t=…`` — the e-mail's unsubscribe link (``unsubscribe_base`` of the email plugin must be
  this service's ``/u``): a small confirmation page whose button POSTs. A GET never unsubscribes (mail
  scanners follow links).
* ``POST /u?c=…&m=…&t=…`` with ``List-Unsubscribe=One-Click`` — RFC 8058 one-click: the token is checked by
  the e-mail channel (:meth:`plugins.channels.email.Email.check_unsubscribe`, reached through the registry),
  then the customer's ``subscriptions["email"]`` is ``unsubscribed`` at once, so a delivery not yet sent is
  not sent. A bad token is 404 and changes nothing.
* ``POST /api/v1/customers/{external_id}/opt-out`` and ``/opt-in`` ``{"channel"}`` — recorded by a marketer,
  an admin or a service, in the audit log.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlencode

import anyio
import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, JSONBody

from engine.errors import UnknownReference
from service.http.auth import READERS, requires
from service.http.deps import Caller, Db, DbDep
from service.http.problems import Problem, conflict, error, not_found, unprocessable
from service.http.routes.workflow import audit_out, user_names
from service.storage import audit
from service.storage.customers import get_customer
from service.storage.receipts import set_subscription
from service.storage.tables import MessageRow

#: who may record an opt-out or opt-in
RECORDERS = requires("marketer", "admin", "service")
#: the largest one-click body read
MAX_FORM = 16 * 1024
#: recorded statuses an opt-in does not override: the address itself is dead, not the consent withdrawn
DEAD = ("hard_bounced", "invalid")
_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                            "frame-ancestors 'none'"}
#: a message's id in engine data, as the e-mail's link carries it (``service.storage.messages.engine_id``)
_ENGINE_ID = re.compile(r"m([1-9][0-9]{0,17})")
_STYLE = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"


def _page(title: str, body: str, status: int = 200) -> Response[str]:
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">'
           f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)}</title>'
           f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return Response(doc, status_code=status, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


def _checked(db: Db, query: dict[str, str]) -> tuple[str, int] | None:
    """(customer external id, message id) of a genuine unsubscribe link, else None."""
    try:
        channel = db.herald.registry.channel("email")
    except UnknownReference:
        return None
    check = getattr(channel, "check_unsubscribe", None)
    found = check(query) if callable(check) else None
    if not (isinstance(found, tuple) and len(found) == 2):
        return None
    customer, message = found
    m = _ENGINE_ID.fullmatch(str(message))
    return (str(customer), int(m.group(1))) if m else None


def _query(request: Request[Any, Any, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k in ("c", "m", "t"):
        value = request.query_params.get(k)
        if isinstance(value, str):
            out[k] = value
    return out


def _exists(db: Db, message_id: int) -> bool:
    with db.tx() as s:
        return s.get(MessageRow, message_id) is not None


@get("/u", operation_id="unsubscribePage", tags=["subscriptions"], security=[], sync_to_thread=True)
def unsubscribe_page(request: Request[Any, Any, Any], db: DbDep) -> Response[str]:
    """The unsubscribe link's page: a button that confirms (a POST). Nothing changes on GET."""
    query = _query(request)
    found = _checked(db, query)
    if found is None or not _exists(db, found[1]):
        return _page("Link not valid", "<p>This unsubscribe link is not valid. Use the link in the most recent "
                     "e-mail you received.</p>", 404)
    action = html.escape("/u?" + urlencode(query), quote=True)
    form = (f'<p>Stop receiving these e-mails?</p><form method="post" action="{action}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>')
    return _page("Unsubscribe", form)


def _unsubscribe(db: Db, customer: str, message_id: int) -> bool:
    """Record the unsubscribe (False when the message does not exist)."""
    with db.tx() as s:
        m = s.get(MessageRow, message_id)
        if m is None:
            return False
        row = get_customer(s, m.org_id, customer)
        if row is not None and row.id is not None:
            before = set_subscription(s, row.id, "email", "unsubscribed")
            if before != "unsubscribed":  # the customer's own act: no user, the link's message says where
                audit.record(s, m.org_id, "customer", row.id, "unsubscribe", before, "unsubscribed", None,
                             f"email: {before or 'not recorded'} → unsubscribed, by the recipient's one-click "
                             f"link of message {message_id}")
        return True


@post("/u", operation_id="unsubscribeOneClick", tags=["subscriptions"], security=[], status_code=200)
async def unsubscribe(request: Request[Any, Any, Any], db: DbDep) -> Response[str]:
    """RFC 8058 one-click unsubscribe (body ``List-Unsubscribe=One-Click``): the customer gets no more e-mail
    from now on. 404 (nothing changed) for a link whose token does not verify."""
    found = _checked(db, _query(request))
    if found is None:
        raise Problem(404, "this unsubscribe link is not valid", code="not_found")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM):
        raise Problem(413, f"a one-click unsubscribe body is at most {MAX_FORM} bytes", code="too_large")
    try:
        form = await request.form()
    except Exception:  # a body that is not a form
        form = {}
    if form.get("List-Unsubscribe") != "One-Click":
        raise Problem(400, "a one-click unsubscribe posts List-Unsubscribe=One-Click (RFC 8058)",
                      [error("List-Unsubscribe", "required", "the form field List-Unsubscribe=One-Click")],
                      code="bad_request")
    if not await anyio.to_thread.run_sync(_unsubscribe, db, *found):
        raise Problem(404, "this unsubscribe link is not valid", code="not_found")
    return _page("Unsubscribed", "<p>You will not receive these e-mails any more.</p>")


class ChannelIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The channel an opt-out or opt-in is about (a registered channel name)."""

    channel: str


def _record(db: Db, caller: Any, external_id: str, channel: str, status: str, action: str) -> dict[str, Any]:
    if channel not in db.herald.registry.channels:
        raise unprocessable("unknown channel", [error("/channel", "unknown_channel",
                                                      f"{channel!r} is not a channel; registered: "
                                                      f"{', '.join(sorted(db.herald.registry.channels))}")])
    with db.tx() as s:
        row = get_customer(s, caller.org_id, external_id)
        if row is None or row.id is None:
            raise not_found("customer")
        current = (row.subscriptions or {}).get(channel)
        if action == "opt_in" and current in DEAD:
            raise conflict(f"the customer's {channel} address is recorded as {current}: update the contact instead "
                           "of opting in", "address_dead")
        before = set_subscription(s, row.id, channel, status)
        audit.record(s, caller.org_id, "customer", row.id, action, before, status, caller.user_id,
                     f"{channel}: {before or 'not recorded'} → {status}")
        return {"id": row.external_id, "channel": channel, "subscription": status, "previous": before}


@post("/customers/{external_id:str}/opt-out", operation_id="optOut", tags=["customers"], guards=[RECORDERS],
      status_code=200, sync_to_thread=True)
def opt_out(external_id: FromPath[str], data: JSONBody[ChannelIn], caller: Caller, db: DbDep) -> dict[str, Any]:
    """Record that the customer opted out of a channel (``unsubscribed``: no run sends on it from now on)."""
    return _record(db, caller, external_id, data.channel, "unsubscribed", "opt_out")


@post("/customers/{external_id:str}/opt-in", operation_id="optIn", tags=["customers"], guards=[RECORDERS],
      status_code=200, sync_to_thread=True)
def opt_in(external_id: FromPath[str], data: JSONBody[ChannelIn], caller: Caller, db: DbDep) -> dict[str, Any]:
    """Record that the customer opted in to a channel (``subscribed``); 409 when the address is recorded dead
    (hard bounced or invalid)."""
    return _record(db, caller, external_id, data.channel, "subscribed", "opt_in")


@get("/customers/{external_id:str}/audit", operation_id="customerAudit", tags=["customers"], guards=[READERS],
     sync_to_thread=True)
def customer_audit(external_id: FromPath[str], caller: Caller, db: DbDep) -> dict[str, Any]:
    """The customer's consent history, oldest first: opt-outs and opt-ins recorded by users, one-click
    unsubscribes by the recipient and unsubscribes reported by a provider (``actor`` null when no user acted)."""
    with db.tx() as s:
        row = get_customer(s, caller.org_id, external_id)
        if row is None or row.id is None:
            raise not_found("customer")
        rows = audit.entries(s, caller.org_id, "customer", row.id)
        names = user_names(s, caller.org_id, rows)
        return {"id": row.external_id, "items": [audit_out(e, names) for e in rows]}


#: handlers under /api/v1
HANDLERS = [opt_out, opt_in, customer_audit]
#: public handlers at the root
PUBLIC_HANDLERS = [unsubscribe_page, unsubscribe]
