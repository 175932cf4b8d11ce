"""What a message's sends did: the report of one send run or of all of them, from the delivery rows.

Audience, excluded by reason (the control group apart), sent and still waiting, delivered, failed, by channel
and by variant, incentives issued or credited (and released), cost, and the clicks the link counter reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from service.storage.tables import Delivery, Run

#: delivery statuses of a provider that took the message (receipts move sent on to the later ones)
ACCEPTED = ("sent", "delivered", "opened", "clicked")
#: delivery statuses the provider confirmed as delivered (opened and clicked imply delivered)
DELIVERED = ("delivered", "opened", "clicked")
WAITING = ("pending", "retrying", "sending")


def send_runs(session: Session, org_id: int, message_id: int) -> list[Run]:
    """The message's send runs, oldest first."""
    return list(session.exec(select(Run).where(Run.org_id == org_id, Run.message_id == message_id,
                                               Run.kind == "send").order_by(col(Run.id))).all())


def report(session: Session, org_id: int, run_ids: Sequence[int], costs: Mapping[str, float],
           clicks: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report of these runs (of one org): counts over their delivery rows; ``costs`` is each channel's
    cost of one send (what the accepted sends cost); ``clicks`` what the link counter says (tiny URLs)."""
    where = (col(Delivery.org_id) == org_id, col(Delivery.run_id).in_(list(run_ids)))
    rows = session.execute(sa_select(col(Delivery.status), col(Delivery.channel), col(Delivery.variant),
                                     col(Delivery.excluded_reason), func.count())
                           .where(*where).group_by(col(Delivery.status), col(Delivery.channel),
                                                   col(Delivery.variant), col(Delivery.excluded_reason))).all()
    statuses: Counter[str] = Counter()
    excluded: Counter[str] = Counter()
    channels: dict[str, Counter[str]] = {}
    variants: dict[str, Counter[str]] = {}
    for status, channel, variant, reason, n in rows:
        statuses[status] += n
        if status == "excluded":
            excluded[reason or "unknown"] += n
            continue
        for key, table in ((channel or "none", channels), (variant or "none", variants)):
            bucket = table.setdefault(key, Counter())
            bucket["sent" if status in ACCEPTED else status] += n
            if status in DELIVERED:
                bucket["delivered"] += n
    sent = sum(statuses[s] for s in ACCEPTED)
    grants = session.exec(select(Delivery.incentive, Delivery.status).where(
        *where, col(Delivery.incentive).is_not(None))).all()
    incentives: Counter[str] = Counter()
    points = 0
    for grant, _ in grants:
        state = (grant or {}).get("status")
        if (grant or {}).get("released"):
            incentives["released"] += 1
        elif state in ("issued", "credited"):
            incentives[state] += 1
            points += int((grant or {}).get("amount") or 0) if state == "credited" else 0
    audience = sum(statuses.values())
    return {
        "runs": list(run_ids),
        "audience": audience,
        "excluded": dict(sorted((k, v) for k, v in excluded.items() if k != "control_group")),
        "control_group": excluded.get("control_group", 0),
        "sent": sent,
        "delivered": sum(statuses[s] for s in DELIVERED),
        "failed": statuses["failed"],
        "cancelled": statuses["cancelled"],
        "waiting": sum(statuses[s] for s in WAITING),
        "by_status": dict(sorted(statuses.items())),
        "by_channel": {k: dict(sorted(v.items())) for k, v in sorted(channels.items())},
        "by_variant": {k: dict(sorted(v.items())) for k, v in sorted(variants.items())},
        "incentives": {"coupons_issued": incentives["issued"], "points_credited": incentives["credited"],
                       "points": points, "released": incentives["released"]},
        "cost": round(sum(costs.get(ch, 0.0) * c["sent"] for ch, c in channels.items()), 6),
        "clicks": dict(clicks or {}),
    }
