"""SQLModel table models: what the database holds, row by row.

These are storage shapes only. The wire schemas (``service.http.schemas``) and the engine's model
(``engine.model``) are separate; ``service.storage.documents`` maps rows to the engine's message data
explicitly. Every row below belongs to exactly one org (``org_id``): repositories always filter on it.

Rows that must never change once written (message versions, the audit log, approvals once decided) have
no update path in the repositories; the audit log is append-only.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Now, in UTC (stored as an aware timestamp where the database keeps zones)."""
    return datetime.now(UTC)


#: 64-bit ids on PostgreSQL; SQLite's INTEGER PRIMARY KEY (its 64-bit rowid) there
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class Org(SQLModel, table=True):
    """A tenant: every other row belongs to one."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    """A principal of one org (a person or a service) with roles."""

    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    name: str = Field(max_length=200)
    roles: str = Field(max_length=200, description="comma-separated: marketer, approver, admin, service")
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    """An API key of a user: only a hash of its secret is kept; the whole key is shown once, at creation."""

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    prefix: str = Field(max_length=32, unique=True, index=True)
    secret_hash: str = Field(max_length=128)
    roles: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class Campaign(SQLModel, table=True):
    """A campaign: its window bounds schedules and coupon validity."""

    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    name: str = Field(max_length=200)
    starts: date | None = None
    ends: date | None = None
    objective: str | None = Field(default=None, max_length=100)
    lock: int = Field(default=1, description="optimistic-locking version, bumped on every change")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class MessageRow(SQLModel, table=True):
    """A message: the editable draft of the six steps (its immutable snapshots are ``MessageVersion``)."""

    __tablename__ = "message"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("campaign_id", "title"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    title: str = Field(max_length=200)
    type: str = Field(default="broadcast", max_length=20)
    strategy: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    rules: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False),
                                  description="rule kind → stored ruleset name")
    channels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    optimizers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    incentive_id: int | None = Field(default=None, foreign_key="incentive.id")
    status: str = Field(default="draft", max_length=30, index=True)
    author_id: int = Field(foreign_key="user.id")
    lock: int = Field(default=1, description="optimistic-locking version, bumped on every change")
    current_version_id: int | None = Field(default=None, description="the snapshot of the draft as it is now")
    submitted_version_id: int | None = Field(default=None, description="the version sent for approval")
    approved_version_id: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class MessageAudience(SQLModel, table=True):
    """One group in a message's audience: ``include`` or ``exclude`` (exclude wins)."""

    __tablename__ = "message_audience"  # type: ignore[assignment]
    message_id: int = Field(foreign_key="message.id", primary_key=True)
    group_id: int = Field(foreign_key="audience_group.id", primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    mode: str = Field(max_length=10, description="include | exclude")


class Schedule(SQLModel, table=True):
    """A message's schedule (the engine's ``schedule`` block)."""

    message_id: int = Field(foreign_key="message.id", primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    kind: str = Field(default="immediate", max_length=20)
    at: str | None = Field(default=None, max_length=64, description="ISO date-time with its offset")
    rrule: str | None = Field(default=None, max_length=1000)
    local_time: str | None = Field(default=None, max_length=5)
    quiet_hours: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class DeliverySettingsRow(SQLModel, table=True):
    """A message's delivery settings: senders per channel, tiny URL, POC contacts, DND and control sends."""

    __tablename__ = "delivery_settings"  # type: ignore[assignment]
    message_id: int = Field(foreign_key="message.id", primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    send_to_dnd: bool = False
    send_to_control: bool = False
    tiny_url: bool = False
    senders: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    poc: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False),
                                      description="points of contact: [{channel, handle}]")


class MessageVersion(SQLModel, table=True):
    """An immutable snapshot of a message: every step and the rule versions it uses, under one hash."""

    __tablename__ = "message_version"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("message_id", "number"), UniqueConstraint("message_id", "hash"))
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    number: int
    hash: str = Field(max_length=80)
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_by: int = Field(foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)


class Creative(SQLModel, table=True):
    """One channel's content for one variant of a message (validated by the channel's plugin at save)."""

    __table_args__ = (UniqueConstraint("message_id", "channel", "variant"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    channel: str = Field(max_length=50)
    variant: str = Field(default="default", max_length=100)
    content: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    lock: int = 1
    created_at: datetime = Field(default_factory=utcnow)


class AudienceGroup(SQLModel, table=True):
    """A reusable audience: by ``filter`` (a condition over customer fields), by ``upload`` (its members
    are rows of ``AudienceMember``) or by ``merge`` (``include`` / ``exclude`` lists of other groups)."""

    __tablename__ = "audience_group"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=10, description="filter | upload | merge")
    definition: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    members: int = Field(default=0, description="member count of an upload group")
    lock: int = Field(default=1, description="optimistic-locking version, bumped on every change")
    created_by: int = Field(foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AudienceMember(SQLModel, table=True):
    """A customer of an upload group."""

    __tablename__ = "audience_member"  # type: ignore[assignment]
    group_id: int = Field(foreign_key="audience_group.id", primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", primary_key=True, index=True, sa_type=BIG_ID)


class Customer(SQLModel, table=True):
    """A recipient. The fields rules use most are typed columns; the rest live in ``attributes`` (JSON).

    Contacts: ``phone``, ``email``, ``push_token``, ``line_id``, ``viber_id``, ``wechat_openid``,
    ``whatsapp``; ``subscriptions`` maps a channel to its recorded status. A deleted customer is
    anonymised: its contacts and attributes are cleared and ``deleted_at`` set, so counts stay true.
    """

    __table_args__ = (UniqueConstraint("org_id", "external_id"), Index("ix_customer_org_live", "org_id", "deleted_at"),
                      Index("ix_customer_org_change", "org_id", "change_gen"))
    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ID)
    org_id: int = Field(foreign_key="org.id")
    external_id: str = Field(max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    push_token: str | None = Field(default=None, max_length=4096)
    line_id: str | None = Field(default=None, max_length=100)
    viber_id: str | None = Field(default=None, max_length=100)
    wechat_openid: str | None = Field(default=None, max_length=100)
    whatsapp: str | None = Field(default=None, max_length=40)
    subscriptions: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    dnd: bool | None = None
    timezone: str | None = Field(default=None, max_length=64)
    language: str | None = Field(default=None, max_length=35)
    tier: str | None = Field(default=None, max_length=50)
    region: str | None = Field(default=None, max_length=100)
    city: str | None = Field(default=None, max_length=100)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    deleted_at: datetime | None = None
    #: the change generation of the write that last touched the row (``service.storage.customer_copy``);
    #: PostgreSQL refuses a write that does not set the writer's current one
    change_gen: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})


class CustomerGeneration(SQLModel, table=True):
    """SQLite's counter of an org's customer writes: each write transaction takes the next generation
    (PostgreSQL uses the writing transaction's id instead)."""

    __tablename__ = "customer_generation"  # type: ignore[assignment]
    org_id: int = Field(foreign_key="org.id", primary_key=True)
    gen: int = Field(sa_type=BigInteger)


class CustomerCopy(SQLModel, table=True):
    """An org's live customers as the engine's audience frame, stored as Parquet: every row written at or
    after change generation ``horizon`` is read again on top of it (``service.storage.customer_copy``)."""

    __tablename__ = "customer_copy"  # type: ignore[assignment]
    org_id: int = Field(foreign_key="org.id", primary_key=True)
    horizon: int = Field(sa_type=BigInteger)
    shape: str = Field(max_length=64)
    rows: int
    data: bytes = Field(sa_type=LargeBinary)
    built_at: datetime = Field(default_factory=utcnow)


class Incentive(SQLModel, table=True):
    """An incentive of the org: a coupon series or a points strategy (``kind`` is a registered incentive
    type, ``settings`` its settings; uploaded coupon codes are rows of ``CouponCode``)."""

    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=50)
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    lock: int = 1
    created_at: datetime = Field(default_factory=utcnow)


class CouponCode(SQLModel, table=True):
    """An uploaded code of a coupon series."""

    __tablename__ = "coupon_code"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("incentive_id", "code"),)
    id: int | None = Field(default=None, primary_key=True)
    incentive_id: int = Field(foreign_key="incentive.id", index=True)
    code: str = Field(max_length=100)


class Ledger(SQLModel, table=True):
    """An incentive ledger (``engine.stores.LedgerStore``): its owner and settings as first recorded."""

    __table_args__ = (UniqueConstraint("org_id", "kind", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    kind: str = Field(max_length=50)
    key: str = Field(max_length=200)
    owner: str = Field(max_length=200)
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    entries: int = Field(default=0, description="its entries, kept with every change under the row's lock")
    items: int = Field(default=0, description="its entries that hold an item, kept likewise")


class LedgerEntryRow(SQLModel, table=True):
    """One holder's entry in a ledger: one per (ledger, holder), an item held by at most one holder."""

    __tablename__ = "ledger_entry"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("ledger_id", "message_key", "customer_key"), UniqueConstraint("ledger_id", "item"))
    id: int | None = Field(default=None, primary_key=True)
    ledger_id: int = Field(foreign_key="ledger.id", index=True)
    message_key: str = Field(max_length=200)
    customer_key: str = Field(max_length=200)
    item: str | None = Field(default=None, max_length=200)
    status: str = Field(max_length=30)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class StoredRuleset(SQLModel, table=True):
    """One version of a ruleset: its text as uploaded and its content-hash version (immutable)."""

    __tablename__ = "ruleset"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("org_id", "name", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=50)
    version: str = Field(max_length=80)
    source: str = Field(sa_column=Column(Text, nullable=False))
    tests: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False),
                                  description="the result of the ruleset's tests at upload")
    created_by: int = Field(foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)


class Approval(SQLModel, table=True):
    """An approver's decision on one message version, bound to the dry run they saw."""

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    version_id: int = Field(foreign_key="message_version.id")
    version_hash: str = Field(max_length=80)
    run_id: int | None = Field(default=None, foreign_key="run.id", description="the dry run the approver saw")
    summary_hash: str | None = Field(default=None, max_length=80)
    decision: str = Field(max_length=20, description="approved | rejected")
    reason: str | None = Field(default=None, max_length=2000)
    approver_id: int = Field(foreign_key="user.id")
    active: bool = Field(default=True, description="false once withdrawn or voided by an edit")
    created_at: datetime = Field(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    """One transition, append-only: who, when, from, to, why, and the version hash."""

    __tablename__ = "audit_log"  # type: ignore[assignment]
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    entity: str = Field(max_length=30)
    entity_id: int = Field(index=True)
    action: str = Field(max_length=30)
    from_status: str | None = Field(default=None, max_length=30)
    to_status: str | None = Field(default=None, max_length=30)
    reason: str | None = Field(default=None, max_length=2000)
    version_hash: str | None = Field(default=None, max_length=80)
    #: the user who acted; none when the customer did (a one-click unsubscribe) or a provider reported it
    actor_id: int | None = Field(default=None, foreign_key="user.id")
    at: datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    """An evaluation of a message version: a dry run (what approvers see) or a send (``kind`` ``send``: one
    execution of an approved message, with its own ``status``: scheduled → sending → sent | failed |
    cancelled)."""

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    version_id: int = Field(foreign_key="message_version.id")
    version_hash: str = Field(max_length=80)
    kind: str = Field(default="dry_run", max_length=20)
    at: datetime
    audience: str = Field(max_length=20, description="stored | ids | inline")
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    summary_hash: str = Field(max_length=80)
    created_by: int = Field(foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default="done", max_length=20, index=True,
                        description="dry runs: done; sends: scheduled, sending, sent, failed, cancelled")
    size: int | None = Field(default=None, description="recipients (a send: its audience when it started)")
    started_at: datetime | None = None
    finished_at: datetime | None = None
    workflow_started: bool = Field(default=False, description="a send: its durable workflow was started")


class RunMember(SQLModel, table=True):
    """A send run's audience, frozen when the run starts: position → customer (chunks are position ranges)."""

    __tablename__ = "run_member"  # type: ignore[assignment]
    run_id: int = Field(foreign_key="run.id", primary_key=True)
    position: int = Field(primary_key=True)
    customer: str = Field(max_length=200)


class Delivery(SQLModel, table=True):
    """One decision of a send run, and its delivery: the idempotency ``key`` (message, run, customer) is
    unique and written before any provider is called, so a retried step, a crashed worker or a second worker
    never sends one key twice.

    ``status``: ``excluded`` (the decision left the recipient out), ``pending`` (due at ``send_at``),
    ``sending`` (claimed by ``claimed_by`` until ``claimed_until``), ``retrying`` (after a transient error, at
    ``next_attempt_at``), ``sent`` (the provider accepted it: ``provider_id``), ``delivered`` / ``bounced`` /
    ``opened`` / ``clicked`` (receipts), ``failed`` (every channel failed: ``errors`` says why) or
    ``cancelled``. ``channel`` is the channel being tried; ``tried`` the channels tried before it.
    """

    __table_args__ = (UniqueConstraint("run_id", "customer"),
                      Index("ix_delivery_run_chunk_status", "run_id", "chunk", "status"))
    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ID)
    org_id: int = Field(foreign_key="org.id", index=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    run_id: int = Field(foreign_key="run.id")
    chunk: int
    customer: str = Field(max_length=200, index=True)
    key: str = Field(max_length=64, unique=True)
    status: str = Field(max_length=20)
    excluded_reason: str | None = Field(default=None, max_length=100)
    variant: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=50)
    tried: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    decision: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    send_at: datetime | None = None
    next_attempt_at: datetime | None = None
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=200)
    claimed_until: datetime | None = None
    provider_id: str | None = Field(default=None, max_length=200, index=True)
    errors: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    incentive: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    sent_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class SendPace(SQLModel, table=True):
    """The next free send time of a rate-limited channel or provider (``key``, as the worker's queues name
    it), in seconds since the epoch by the database's clock: every worker reserves its sends' times here, so a
    rate holds in every second across all of them."""

    __tablename__ = "send_pace"  # type: ignore[assignment]
    key: str = Field(primary_key=True, max_length=120)
    next_at: float


class OutboxMessage(SQLModel, table=True):
    """What the ``log`` transport "sends": the rendered request, once per (delivery key, channel); its org is
    the delivery's (joined on ``key``)."""

    __tablename__ = "outbox"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("key", "channel"),)
    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ID)
    key: str = Field(max_length=64)
    channel: str = Field(max_length=50)
    to: str = Field(max_length=4096)
    body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class RunDecision(SQLModel, table=True):
    """One recipient's decision in a run (the whole decision as JSON, the columns people filter on typed)."""

    __tablename__ = "run_decision"  # type: ignore[assignment]
    run_id: int = Field(foreign_key="run.id", primary_key=True)
    position: int = Field(primary_key=True)
    customer: str = Field(max_length=200)
    included: bool
    variant: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=50)
    excluded_reason: str | None = Field(default=None, max_length=100)
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a create request with an ``Idempotency-Key``, replayed to repeats."""

    __tablename__ = "idempotency"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("org_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id")
    key: str = Field(max_length=255)
    fingerprint: str = Field(max_length=80, description="method, path and body hash of the first request")
    status: int
    body: bytes
    content_type: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class TinyLink(SQLModel, table=True):
    """A tracked link of one delivery: ``/t/{code}`` redirects to ``url`` (a link of the rendered, approved
    content) and counts its clicks. One code per distinct URL per delivery (unique ``(key, url_hash)``)."""

    __tablename__ = "tiny_link"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("key", "url_hash"), Index("ix_tiny_link_org_message_run", "org_id", "message_id",
                                                                 "run_id"))
    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ID)
    code: str = Field(max_length=64, unique=True)
    org_id: int = Field(foreign_key="org.id")
    key: str = Field(max_length=64, index=True, description="the delivery's idempotency key")
    message_id: int = Field(foreign_key="message.id")
    run_id: int = Field(foreign_key="run.id")
    url: str = Field(sa_column=Column(Text, nullable=False))
    url_hash: str = Field(max_length=64, description="SHA-256 of the URL (hex)")
    clicks: int = 0
    first_clicked_at: datetime | None = None
    last_clicked_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class WebhookSecret(SQLModel, table=True):
    """An org's secret for one receipt provider: the Twilio auth token, the SendGrid verification key (its
    public key) or the HMAC key of ``herald`` receipts, sealed (:mod:`service.storage.sealing`: signatures need
    the secret itself, so it is encrypted, not hashed); never returned."""

    __tablename__ = "webhook_secret"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("org_id", "provider"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="org.id", index=True)
    provider: str = Field(max_length=30)
    secret: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class ReceiptEvent(SQLModel, table=True):
    """A delivery receipt, stored once per (org, provider, event id): a repeated event changes nothing."""

    __tablename__ = "receipt_event"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("org_id", "provider", "event_id"),)
    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ID)
    org_id: int = Field(foreign_key="org.id")
    provider: str = Field(max_length=30)
    event_id: str = Field(max_length=200)
    key: str = Field(max_length=64, index=True, description="the delivery's idempotency key")
    status: str = Field(max_length=20, description="delivered, bounced, failed, opened, clicked or other")
    hard: bool = Field(default=False, description="a bounce the provider called permanent")
    applied: bool = Field(default=False, description="whether it moved the delivery's status")
    at: datetime | None = None
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


class CallTask(SQLModel, table=True):
    """A call-centre task: what the ``task`` transport writes for a delivery on a ``kind="task"`` channel, once
    per (delivery key, channel). ``status``: ``open`` → ``claimed`` (by ``claimed_by``, at ``claimed_at``) →
    ``done`` with the agent's ``outcome`` (``reached``, ``no_answer`` …) and ``note``."""

    __tablename__ = "call_task"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("key", "channel"), Index("ix_call_task_org_status", "org_id", "status", "id"),
                      Index("ix_call_task_org_message", "org_id", "message_id", "id"))
    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ID)
    org_id: int = Field(foreign_key="org.id")
    key: str = Field(max_length=64, description="the delivery's idempotency key")
    channel: str = Field(max_length=50)
    message_id: int = Field(foreign_key="message.id")
    run_id: int = Field(foreign_key="run.id")
    customer: str = Field(max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    queue: str | None = Field(default=None, max_length=200)
    task: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False), description="the rendered task")
    status: str = Field(default="open", max_length=20, description="open, claimed or done")
    claimed_by: int | None = Field(default=None, foreign_key="user.id")
    claimed_at: datetime | None = None
    outcome: str | None = Field(default=None, max_length=30)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    completed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class AdExportRow(SQLModel, table=True):
    """One member of an ad audience export: the hashed identifiers the ``ad`` transport records for a delivery on
    a ``kind="ad"`` channel, once per (delivery key, channel); the run's export files are written from these."""

    __tablename__ = "ad_export_row"  # type: ignore[assignment]
    __table_args__ = (UniqueConstraint("key", "channel"), Index("ix_ad_export_row_run_channel", "run_id", "channel", "id"))
    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ID)
    org_id: int = Field(foreign_key="org.id", index=True)
    key: str = Field(max_length=64, description="the delivery's idempotency key")
    channel: str = Field(max_length=50)
    message_id: int = Field(foreign_key="message.id")
    run_id: int = Field(foreign_key="run.id")
    email: str | None = Field(default=None, max_length=64, description="SHA-256 hex of the normalised e-mail")
    phone: str | None = Field(default=None, max_length=64, description="SHA-256 hex of the normalised phone")
    created_at: datetime = Field(default_factory=utcnow)
