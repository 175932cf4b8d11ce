"""``herald demo``: a demo org seeded through the HTTP API itself — an admin, a marketer and an approver (keys
printed once), the sample customers, the sample rulesets, a campaign and a draft message with every step
filled in (rules, audience, creatives, coupon, schedule, delivery), ready to dry-run, submit and approve —
and, on request, a second message of the same steps taken through approval for a worker to send at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from litestar import Litestar
from litestar.testing import TestClient

from service.storage.db import transaction
from service.storage.keys import create_org

API = "/api/v1"


class SeedFailed(RuntimeError):
    """A seeding request was refused (the message says which and why)."""


@dataclass(frozen=True)
class Demo:
    """What the demo seeded: the keys (shown once) and the ids a reader needs."""

    keys: dict[str, str]
    campaign_id: int
    message_id: int
    group_id: int
    customers: int
    sent_message_id: int | None = None


def _ok(response: Any, what: str) -> dict[str, Any]:
    if response.status_code >= 300:
        raise SeedFailed(f"seeding the demo failed at {what}: {response.status_code} {response.text[:500]}")
    return response.json() if response.content else {}


def seed(app: Litestar, examples: Path, *, now: datetime | None = None, org_name: str = "Herald demo",
         send_one: bool = False) -> Demo:
    """Seed a new demo org into the app's database through its own API; return the keys and ids. With
    ``send_one``, a second message of the same steps, scheduled immediately, is submitted, dry-run and approved
    (a worker then sends it)."""
    now = now or datetime.now(UTC)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the in-process requests are not news
    with transaction(app.state.db.engine) as s:
        _, _, admin_key = create_org(s, org_name)
    keys = {"admin": admin_key}
    with TestClient(app) as c:
        admin = {"Authorization": f"Bearer {admin_key}"}
        for who in ("marketer", "approver"):
            keys[who] = _ok(c.post(f"{API}/users", json={"name": who, "roles": [who]}, headers=admin), f"user {who}")["api_key"]
        h = {"Authorization": f"Bearer {keys['marketer']}"}
        loaded = _ok(c.post(f"{API}/customers/bulk", content=(examples / "audience.csv").read_bytes(),
                            headers={**h, "Content-Type": "text/csv"}), "customers")
        message = yaml.safe_load((examples / "summer-sale.message.yaml").read_text(encoding="utf-8"))
        rules = {}
        for kind, ref in message["rules"].items():
            text = (examples / ref).read_text(encoding="utf-8")
            stored = _ok(c.post(f"{API}/rulesets", content=text.encode(),
                                headers={**h, "Content-Type": "application/yaml"}), f"ruleset {ref}")
            rules[kind] = stored["name"]
        group = _ok(c.post(f"{API}/audience-groups", json={"name": "Everyone with a phone or e-mail",
                                                           "filter": {"any": [{"field": "customer.phone", "exists": True},
                                                                              {"field": "customer.email", "exists": True}]}},
                           headers=h), "audience group")
        ends = (now + timedelta(days=60)).date().isoformat()
        campaign = _ok(c.post(f"{API}/campaigns", json={"name": "Summer sale", "starts": now.date().isoformat(),
                                                        "ends": ends, "objective": "revenue"}, headers=h), "campaign")
        incentive = _ok(c.post(f"{API}/incentives", json={"name": "Summer coupons", **message["incentive"]}, headers=h),
                        "incentive")
        send = (now + timedelta(days=1)).replace(hour=13, minute=30, second=0, microsecond=0)
        filled = _Filler(c, h, message, rules, group["id"], incentive["id"], campaign["id"])
        msg = filled.message(message["message"]["title"], {"kind": "at", "at": send.isoformat()})
        sent = None
        if send_one:
            sent = filled.message("Welcome offer (sent by the demo)", {"kind": "immediate"})
            _submit_and_approve(c, sent, h, {"Authorization": f"Bearer {keys['approver']}"})
    return Demo(keys, campaign["id"], msg, group["id"], int(loaded.get("created", 0)) + int(loaded.get("updated", 0)),
                sent)


@dataclass
class _Filler:
    """Creates a message of the sample's six steps in the demo campaign."""

    c: Any
    h: dict[str, str]
    sample: dict[str, Any]
    rules: dict[str, str]
    group_id: int
    incentive_id: int
    campaign_id: int

    def message(self, title: str, schedule: dict[str, Any]) -> int:
        c, h, head = self.c, self.h, self.sample["message"]
        msg = _ok(c.post(f"{API}/campaigns/{self.campaign_id}/messages",
                         json={"title": title, "type": head["type"], "strategy": head["strategy"]}, headers=h),
                  "message")
        url = f"{API}/messages/{msg['id']}"
        _ok(c.put(f"{url}/rules", json=self.rules, headers=h), "rules")
        _ok(c.put(f"{url}/audience", json={"include": [self.group_id]}, headers=h), "audience")
        _ok(c.put(f"{url}/delivery", json={"senders": self.sample["delivery"]["senders"]}, headers=h), "delivery")
        for creative in self.sample["creatives"]:
            _ok(c.post(f"{url}/creatives", json=creative, headers=h), f"creative {creative['channel']}")
        _ok(c.put(f"{url}/incentive", json={"incentive_id": self.incentive_id}, headers=h), "message incentive")
        _ok(c.put(f"{url}/schedule", json=schedule, headers=h), "schedule")
        return int(msg["id"])


def _submit_and_approve(c: Any, message_id: int, marketer: dict[str, str], approver: dict[str, str]) -> None:
    """Submit (the marketer), dry-run and approve (the approver): the message is ``approved``."""
    url = f"{API}/messages/{message_id}"
    version = _ok(c.post(f"{url}/submit", headers=marketer), "submit")["submitted_version"]["hash"]
    run = _ok(c.post(f"{url}/dry-run", json={"summary_only": True}, headers=marketer), "dry run")["run_id"]
    _ok(c.post(f"{url}/approve", json={"version_hash": version, "dry_run_id": run}, headers=approver), "approve")


def wait_for_report(app: Litestar, message_id: int, key: str, timeout: float = 120.0) -> dict[str, Any]:
    """The message's report once its send is over (``sent`` or ``failed``), or as it stands at ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    with TestClient(app) as c:
        while True:
            report = _ok(c.get(f"{API}/messages/{message_id}/report", headers={"Authorization": f"Bearer {key}"}),
                         "report")
            if report["status"] in ("sent", "failed") or time.monotonic() > deadline:
                return report
            time.sleep(0.2)
