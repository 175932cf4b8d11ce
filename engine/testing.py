"""The plugin contract test kit: a pytest plugin any channel or incentive plugin runs against itself.

Enable it with ``-p engine.testing`` or ``pytest_plugins = ["engine.testing"]`` in a top-level conftest,
then subclass a contract in a test module (the class name must start with ``Test``)::

    from engine.testing import ChannelContract

    class TestTiktok(ChannelContract):
        channel = Tiktok({})                 # or override the ``herald_channel`` fixture (e.g. parametrised)

The channel supplies valid sample creatives through an optional ``sample_creatives()`` method (a list of
``Creative`` or of content mappings), else ``creative_schema["examples"]``, else the subclass's
``valid_creatives``; without any, the sample-based checks are skipped with a reason naming the channel.
Incentive types supply ``sample_specs()`` (or ``valid_specs``) and ``sample_invalid_specs()`` (or
``invalid_specs``) as ``(settings, path)`` pairs. ``send``, ``issue`` and ``release`` are tested against fakes:
a :class:`FakeTransport` that records requests and answers accepted, transient or permanent, and a fresh
in-memory ledger store per test (so the kit sees what a preview, a reservation or a release leaves behind).
This module is test support: the engine's runtime never imports it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pytest

from engine.contracts import (
    Channel,
    ColumnarChannel,
    DecisionDraft,
    EvaluationContext,
    IncentiveContext,
    IncentiveType,
    SendContext,
    SendRequest,
    SendResult,
)
from engine.fields import build_catalogue
from engine.hookspecs import hookimpl
from engine.model import Campaign, Creative, Customer, DeliverySettings, IncentiveSpec, Message, Reachability
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.rendering import compliance_issues, render_context
from engine.stores import InMemoryLedgerStore
from engine.templating import render as render_template
from engine.validation import validate_message

AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)
CAMPAIGN = Campaign("contract-kit", "Contract kit", date(2026, 1, 1), date(2026, 12, 31))
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: Contact handles of a customer every channel can reach (realistic formats: E.164, LINE ``U``+32 hex …).
FULL_CONTACT: Mapping[str, Any] = {
    "phone": "+14155550123",
    "email": "ana.silva@example.com",
    "push_token": "fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqxA8k",
    "line_id": "U4af4980629a1b2c3d4e5f60718293a4b",
    "viber_id": "01234567890A=Bc9xYz",
    "wechat_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    "whatsapp": "+14155550123",
    "timezone": "Asia/Kolkata",
    "language": "en",
    "first_name": "Ana",
    "last_name": "Silva",
    "tier": "gold",
    "points": 1200,
    "city": "Mumbai",
}
#: Sender settings for the built-in channels; a contract subclass may replace ``senders``.
DEFAULT_SENDERS: Mapping[str, Mapping[str, Any]] = {
    "sms": {"sender_id": "HERALD"},
    "email": {"from": "offers@herald.example", "reply_to": "care@herald.example", "sender_name": "Herald"},
    "viber": {"name": "Herald"},
}
#: Org fields the kit's catalogue adds to the built-in ones, so samples may greet by name.
KIT_FIELDS = {"first_name": "string", "last_name": "string", "tier": "string", "points": "integer", "city": "string"}
UNREACHABLE = (Reachability.UNSUBSCRIBED, Reachability.HARD_BOUNCED, Reachability.INVALID)
REACHABLE = (Reachability.VALID, Reachability.SUBSCRIBED, Reachability.UNABLE_TO_VERIFY, Reachability.SOFT_BOUNCED)


# --- helpers (usable without the pytest plugin) -------------------------------------------------------


class FakeTransport:
    """A transport for tests: records every request and answers with ``answers`` in turn (the last one
    repeats; default: accepted, with provider ids ``fake-1``, ``fake-2`` …)."""

    def __init__(self, *answers: SendResult):
        self.answers = list(answers)
        self.requests: list[SendRequest] = []

    async def deliver(self, request: SendRequest) -> SendResult:
        """Record ``request`` and answer."""
        self.requests.append(request)
        if not self.answers:
            return SendResult.accepted(f"fake-{len(self.requests)}")
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def send_context(customer_id: str = "kit-reachable", transport: Any = None, **settings: Any) -> SendContext:
    """A send of the kit's message to ``customer_id`` in run ``kit-run``, through ``transport``."""
    return SendContext("contract-kit", "kit-run", customer_id, dict(settings), transport)


def registry_of(*objects: Any, settings: Mapping[str, Mapping[str, Any]] | None = None) -> Registry:
    """A registry (fresh manager, no entry points) holding the given plugin modules, or the given channel
    and incentive objects wrapped into a one-off plugin."""
    plugins: list[Any] = []
    loose = [o for o in objects if isinstance(o, (Channel, IncentiveType))]
    plugins += [o for o in objects if o not in loose]
    if loose:
        plugins.append(_Wrapper(loose))
    return Registry.build(make_plugin_manager(plugins, entry_points=False), settings)


class _Wrapper:
    """A plugin object registering loose channels and incentive types (named after the first one)."""

    def __init__(self, objects: Sequence[Any]):
        self.objects = list(objects)
        first = self.objects[0]
        self.__name__ = f"contract-kit:{getattr(first, 'name', None) or getattr(first, 'kind', 'plugin')}"

    @hookimpl
    def register_channels(self, register):
        """Register the wrapped channels."""
        for o in self.objects:
            if isinstance(o, Channel):
                register(o)

    @hookimpl
    def register_incentives(self, register):
        """Register the wrapped incentive types."""
        for o in self.objects:
            if isinstance(o, IncentiveType) and not isinstance(o, Channel):
                register(o)


def catalogue_for(registry: Registry) -> Any:
    """Built-in fields, the registry's contact fields and plugin fields, and the kit's few org fields
    (``KIT_FIELDS``)."""
    from engine.contracts import FieldSpec

    org = [FieldSpec(f"customer.{k}", t) for k, t in KIT_FIELDS.items()]  # type: ignore[arg-type]
    return build_catalogue((r.obj for r in registry.fields.values()), org, registry.contacts.values())


def sample_creatives(channel: Any, fallback: Iterable[Any] = ()) -> list[Creative]:
    """The channel's valid sample creatives: ``sample_creatives()``, else ``creative_schema["examples"]``,
    else ``fallback``; mappings are taken as content of the ``default`` variant."""
    found: Iterable[Any] = ()
    if callable(getattr(channel, "sample_creatives", None)):
        found = channel.sample_creatives()
    elif isinstance(getattr(channel, "creative_schema", None), Mapping) and channel.creative_schema.get("examples"):
        found = channel.creative_schema["examples"]
    found = list(found) or list(fallback)
    return [c if isinstance(c, Creative) else Creative(channel.name, "default", dict(c)) for c in found]


def contact_customers(channel: str, extra: Mapping[str, Any] | None = None) -> dict[str, Customer]:
    """The standard contact states: ``no_contact``, ``reachable`` (every handle, nothing recorded),
    ``unknown_status`` (an unrecognised recorded status: never reachable), and one customer per
    ``Reachability`` value recorded as ``subscription.<channel>``."""
    full = {**FULL_CONTACT, **(extra or {})}
    out = {
        "no_contact": Customer("kit-no-contact", {"first_name": "Nia", "timezone": "UTC"}),
        "reachable": Customer("kit-reachable", full),
        "unknown_status": Customer("kit-unknown", {**full, f"subscription.{channel}": "pending_review"}),
    }
    for status in (*REACHABLE, *UNREACHABLE):
        out[str(status)] = Customer(f"kit-{status}", {**full, f"subscription.{channel}": str(status)})
    return out


def kit_message(channel: str, creatives: Sequence[Creative], senders: Mapping[str, Any] = DEFAULT_SENDERS,
                incentive: IncentiveSpec | None = None, kind: str = "direct") -> Message:
    """A channel-priority message holding ``creatives`` for ``channel`` (each as its own variant);
    ``kind="ad"`` adds the x_engage strategy ad channels need."""
    own = tuple(Creative(channel, c.variant if i == 0 else f"{c.variant}_{i}", c.content)
                for i, c in enumerate(creatives))
    strategy = ("channel_priority", "x_engage") if kind == "ad" else ("channel_priority",)
    return Message("contract-kit", "Contract kit", CAMPAIGN, strategy=strategy,
                   channels=(channel,), creatives=own, incentive=incentive,
                   delivery=DeliverySettings(senders=dict(senders)))


def strip_tag(content: Any, tag: str) -> Any:
    """``content`` with every ``{{ tag … }}`` output removed (for the missing-required-tag check)."""
    pattern = re.compile(r"{{-?\s*" + re.escape(tag) + r"(\.[\w.]+)?\s*(\|[^}]*)?-?}}")
    if isinstance(content, str):
        return pattern.sub("", content)
    if isinstance(content, Mapping):
        return {k: strip_tag(v, tag) for k, v in content.items()}
    if isinstance(content, (list, tuple)):
        return [strip_tag(v, tag) for v in content]
    return content


def _errors(issues: Iterable[Any]) -> list[str]:
    return [f"{i.path}: {i.code}: {i.message}" for i in issues if i.is_error]


# --- the channel contract ------------------------------------------------------------------------------


class ChannelContract:
    """Contract tests for one channel. Set ``channel`` (an instance) or override ``herald_channel``.

    Optional attributes: ``valid_creatives`` (used when the channel offers no samples), ``senders``
    (delivery sender settings for the kit's message), ``contact`` (extra customer attributes the channel
    needs to reach someone), ``reports_recorded_status`` (False if the channel may answer a recorded
    reachable status with another reachable one).
    """

    channel: Any = None
    valid_creatives: Sequence[Any] = ()
    senders: Mapping[str, Any] = DEFAULT_SENDERS
    contact: Mapping[str, Any] = {}
    reports_recorded_status = True

    @pytest.fixture
    def herald_channel(self) -> Any:
        """The channel under test."""
        if self.channel is None:
            pytest.fail(f"{type(self).__name__}: set `channel = MyChannel(...)` or override the herald_channel fixture")
        return self.channel

    @pytest.fixture
    def herald_samples(self, herald_channel) -> list[Creative]:
        """The valid sample creatives (skips the sample-based checks, naming the channel, when none)."""
        samples = sample_creatives(herald_channel, self.valid_creatives)
        if not samples:
            pytest.skip(f"channel {herald_channel.name!r} offers no sample creatives: add a sample_creatives() "
                        "method (see docs/writing-plugins.md)")
        return samples

    @pytest.fixture
    def herald_registry(self, herald_channel) -> Registry:
        """A registry holding only the channel under test."""
        return registry_of(herald_channel)

    def test_conforms_to_the_channel_protocol(self, herald_channel):
        """Name, kind, cost, tags and schema have the shapes the engine relies on."""
        ch = herald_channel
        assert isinstance(ch, Channel), f"{ch!r} lacks members of engine.Channel"
        assert _NAME.match(ch.name), f"channel name {ch.name!r} must be lower_snake_case"
        assert ch.kind in ("direct", "ad", "task"), f"{ch.name}: kind {ch.kind!r} is not direct, ad or task"
        assert isinstance(ch.cost, (int, float)) and ch.cost >= 0, f"{ch.name}: cost must be a number ≥ 0"
        assert isinstance(ch.required_tags, tuple) and all(isinstance(t, str) for t in ch.required_tags), \
            f"{ch.name}: required_tags must be a tuple of tag names"
        assert isinstance(ch.tags, Mapping) and isinstance(ch.creative_schema, Mapping), \
            f"{ch.name}: tags and creative_schema must be mappings"

    def test_valid_samples_validate(self, herald_channel, herald_samples, herald_registry):
        """Every sample passes the channel's own checks and the whole-message validation (tags included)."""
        message = kit_message(herald_channel.name, herald_samples, self.senders, kind=herald_channel.kind)
        for creative in message.creatives:
            errors = _errors(herald_channel.validate(creative, message))
            assert not errors, f"{herald_channel.name} sample {dict(creative.content)} is rejected: {errors}"
        errors = _errors(validate_message(message, herald_registry, catalogue_for(herald_registry)))
        assert not errors, f"{herald_channel.name} samples fail message validation: {errors}"

    def test_a_creative_without_a_required_tag_is_rejected(self, herald_channel, herald_samples, herald_registry):
        """Removing any required tag from a sample makes validation report ``missing_required_tag``."""
        if not herald_channel.required_tags:
            pytest.skip(f"channel {herald_channel.name!r} requires no tag")
        for tag in herald_channel.required_tags:
            bare = Creative(herald_channel.name, "default", strip_tag(dict(herald_samples[0].content), tag))
            message = kit_message(herald_channel.name, [bare], self.senders, kind=herald_channel.kind)
            found = validate_message(message, herald_registry, catalogue_for(herald_registry))
            codes = {(i.code, i.path.split(".content")[0]) for i in found if i.is_error}
            assert ("missing_required_tag", "creatives[0]") in codes, \
                f"{herald_channel.name}: a creative without {{{{ {tag} }}}} was not rejected (got {codes or 'no errors'})"

    def test_an_unknown_tag_is_rejected(self, herald_channel, herald_samples, herald_registry):
        """A tag nobody provides is an error, with the path of the field that uses it."""
        content = dict(herald_samples[0].content)
        key = next((k for k, v in content.items() if isinstance(v, str)), None)
        if key is None:
            pytest.skip(f"channel {herald_channel.name!r}: the first sample has no top-level text field")
        content[key] = content[key] + " {{ customer.no_such_field }}"
        message = kit_message(herald_channel.name, [Creative(herald_channel.name, "default", content)], self.senders,
                              kind=herald_channel.kind)
        found = validate_message(message, herald_registry, catalogue_for(herald_registry))
        assert any(i.code == "unknown_tag" and i.path == f"creatives[0].content.{key}" for i in found), \
            f"{herald_channel.name}: {{{{ customer.no_such_field }}}} in {key} was not reported"

    def test_reachability_of_the_standard_contact_states(self, herald_channel):
        """No contact → contact_unavailable; every handle → reachable; recorded statuses are honoured."""
        name = herald_channel.name
        message = kit_message(name, [Creative(name)], self.senders, kind=herald_channel.kind)
        customers = contact_customers(name, self.contact)
        got = {state: herald_channel.reachability(c, message) for state, c in customers.items()}
        for state, status in got.items():
            assert isinstance(status, Reachability), f"{name}: reachability({state}) returned {status!r}"
        assert got["no_contact"] == Reachability.CONTACT_UNAVAILABLE, f"{name}: no contact gave {got['no_contact']}"
        assert got["reachable"].reachable, f"{name}: a customer with every handle is {got['reachable']}"
        assert not got["unknown_status"].reachable, f"{name}: an unknown subscription status must never be reachable"
        for status in UNREACHABLE:
            assert not got[str(status)].reachable, f"{name}: recorded {status} must not be reachable"
        for status in REACHABLE:
            assert got[str(status)].reachable, f"{name}: recorded {status} must stay reachable"
            if self.reports_recorded_status:
                assert got[str(status)] == status, f"{name}: recorded {status} reported as {got[str(status)]}"

    def test_columnar_reachability_equals_reachability(self, herald_channel):
        """When the channel has ``reachability_expr``, it agrees with ``reachability`` on every state."""
        if not isinstance(herald_channel, ColumnarChannel):
            pytest.skip(f"channel {herald_channel.name!r} has no reachability_expr")
        import polars as pl

        channel: Any = herald_channel  # a Channel that is also a ColumnarChannel

        name = channel.name
        message = kit_message(name, [Creative(name)], self.senders, kind=channel.kind)
        customers = list(contact_customers(name, self.contact).values())
        rows = [{"customer.id": c.id, **{f"customer.{k}": v for k, v in c.attributes.items()}} for c in customers]
        frame = pl.DataFrame(rows, infer_schema_length=None).lazy()
        got = frame.select(channel.reachability_expr(message).alias("r")).collect()["r"].to_list()
        assert got == [str(channel.reachability(c, message)) for c in customers]

    def test_render_is_deterministic_and_json_ready(self, herald_channel, herald_samples):
        """Rendering a sample twice for the same recipient gives the same JSON-serialisable payload, and the
        payload passes the channel's compliance check (``engine.pipeline.compliance_issues``)."""
        message = kit_message(herald_channel.name, herald_samples, self.senders, kind=herald_channel.kind)
        customer = contact_customers(herald_channel.name, self.contact)["reachable"]
        for creative in message.creatives:
            draft = DecisionDraft(customer, {}, AT, variant=creative.variant, channels=[herald_channel.name])
            ctx = render_context(message, draft, herald_channel.name, herald_channel.tags)
            first = herald_channel.render(creative, ctx)
            second = herald_channel.render(creative, render_context(message, draft, herald_channel.name,
                                                                    herald_channel.tags))
            assert isinstance(first, Mapping), f"{herald_channel.name}: render must return a mapping"
            assert first == second, f"{herald_channel.name}: render is not deterministic"
            json.dumps(first)  # a provider payload is JSON
            problems = compliance_issues(herald_channel, first, ctx)
            assert not problems, f"{herald_channel.name}: a rendered sample fails compliance: {_errors(problems)}"

    def rendered_sample(self, channel: Any, samples: Sequence[Creative]) -> Mapping[str, Any]:
        """The first sample rendered for the kit's reachable customer."""
        message = kit_message(channel.name, samples, self.senders, kind=channel.kind)
        customer = contact_customers(channel.name, self.contact)["reachable"]
        draft = DecisionDraft(customer, {}, AT, variant=message.creatives[0].variant, channels=[channel.name])
        return channel.render(message.creatives[0], render_context(message, draft, channel.name, channel.tags))

    def test_send_goes_through_the_transport(self, herald_channel, herald_samples):
        """``send`` hands one request for the recipient to the transport (with the send's idempotency key and
        settings) and returns the transport's answer: accepted, transient (with retry_after) or permanent."""
        name = herald_channel.name
        payload = self.rendered_sample(herald_channel, herald_samples)
        answers = (SendResult.accepted("prov-1"), SendResult.transient("rate limited", 30.0),
                   SendResult.permanent("number barred"))
        for answer in answers:
            transport = FakeTransport(answer)
            ctx = send_context(transport=transport, account="kit")
            result = asyncio.run(herald_channel.send(payload, ctx))
            assert result == answer, f"{name}: send returned {result!r}, the transport answered {answer!r}"
            assert len(transport.requests) == 1, f"{name}: send made {len(transport.requests)} requests, not 1"
            request = transport.requests[0]
            assert request.channel == name and request.to.strip(), f"{name}: a request without a recipient: {request}"
            assert request.idempotency_key == ctx.idempotency_key, f"{name}: the request lost the idempotency key"
            assert dict(request.settings) == {"account": "kit"}, f"{name}: the request lost the send's settings"
            json.dumps(request.body)

    def test_send_without_a_transport_is_a_permanent_error(self, herald_channel, herald_samples):
        """No transport configured: a permanent error naming the channel, never a pretended success."""
        payload = self.rendered_sample(herald_channel, herald_samples)
        result = asyncio.run(herald_channel.send(payload, send_context()))
        assert isinstance(result, SendResult) and result.outcome == "permanent", \
            f"{herald_channel.name}: send without a transport gave {result!r}"
        assert f"no transport configured for channel {herald_channel.name}" in (result.reason or "")

    def test_the_idempotency_key_depends_on_message_run_and_customer_only(self):
        """A retried send carries the same key; another run or customer gets another one."""
        transport = FakeTransport()
        key = send_context(transport=transport).idempotency_key
        assert send_context(transport=FakeTransport(), other="x").idempotency_key == key
        assert send_context("someone-else").idempotency_key != key
        assert SendContext("contract-kit", "run-2", "kit-reachable").idempotency_key != key


# --- the incentive contract ----------------------------------------------------------------------------


class IncentiveContract:
    """Contract tests for one incentive type. Set ``incentive`` or override ``herald_incentive``.

    Samples come from the type's ``sample_specs()`` or ``valid_specs``; ``invalid_specs`` lists
    ``(settings, path)`` pairs that must be rejected with an error at ``path``.
    """

    incentive: Any = None
    valid_specs: Sequence[Mapping[str, Any]] = ()
    invalid_specs: Sequence[tuple[Mapping[str, Any], str]] = ()

    @pytest.fixture
    def herald_incentive(self) -> Any:
        """The incentive type under test."""
        if self.incentive is None:
            pytest.fail(f"{type(self).__name__}: set `incentive = MyIncentive()` or override herald_incentive")
        return self.incentive

    @pytest.fixture
    def herald_specs(self, herald_incentive) -> list[Mapping[str, Any]]:
        """Valid settings (skips the sample-based checks when there are none)."""
        specs = list(herald_incentive.sample_specs()) if callable(getattr(herald_incentive, "sample_specs", None)) \
            else list(self.valid_specs)
        if not specs:
            pytest.skip(f"incentive {herald_incentive.kind!r} offers no sample_specs()")
        return specs

    def context(self, incentive: Any, spec: Mapping[str, Any], *, preview: bool,
                ledger: InMemoryLedgerStore | None = None) -> EvaluationContext:
        """An evaluation context for a kit message carrying ``spec``, over ``ledger`` (default: a new one)."""
        message = kit_message("kit", [], incentive=IncentiveSpec(incentive.kind, dict(spec)))
        return EvaluationContext(message, registry_of(incentive), AT, lambda kind, draft: (), preview,
                                 ledger=ledger if ledger is not None else InMemoryLedgerStore())

    @staticmethod
    def grant_context(ctx: EvaluationContext) -> IncentiveContext:
        """The context ``issue`` and ``release`` get for a grant reserved under ``ctx`` (sent a day later)."""
        return IncentiveContext(ctx.message, ctx.ledger, AT.replace(day=AT.day + 1))

    def test_conforms_to_the_incentive_protocol(self, herald_incentive):
        """Kind, tags and schema have the shapes the engine relies on; tags live under the kind."""
        inc = herald_incentive
        assert isinstance(inc, IncentiveType), f"{inc!r} lacks members of engine.IncentiveType"
        assert _NAME.match(inc.kind), f"incentive kind {inc.kind!r} must be lower_snake_case"
        assert inc.tags and all(t.startswith(inc.kind + ".") for t in inc.tags), \
            f"{inc.kind}: tags must be named {inc.kind}.<field>, got {inc.tags}"
        assert isinstance(inc.spec_schema, Mapping)

    def test_valid_specs_validate(self, herald_incentive, herald_specs):
        """Every sample setting passes validation."""
        for spec in herald_specs:
            message = kit_message("kit", [], incentive=IncentiveSpec(herald_incentive.kind, dict(spec)))
            errors = _errors(herald_incentive.validate(spec, message))
            assert not errors, f"{herald_incentive.kind} sample {spec} is rejected: {errors}"

    @pytest.fixture
    def herald_invalid_specs(self, herald_incentive) -> list[tuple[Mapping[str, Any], str]]:
        """``(settings, path)`` pairs: the type's ``sample_invalid_specs()``, else ``invalid_specs``."""
        found: Any = getattr(herald_incentive, "sample_invalid_specs", None)
        if found is not None:
            return list(found())
        return list(self.invalid_specs)

    def test_invalid_specs_name_the_field(self, herald_incentive, herald_invalid_specs):
        """Every listed invalid setting is rejected with an error at its path."""
        if not herald_invalid_specs:
            pytest.skip(f"no invalid specs listed for {herald_incentive.kind!r}")
        for spec, path in herald_invalid_specs:
            message = kit_message("kit", [], incentive=IncentiveSpec(herald_incentive.kind, dict(spec)))
            paths = {i.path for i in herald_incentive.validate(spec, message) if i.is_error}
            assert path in paths, f"{herald_incentive.kind}: {spec} should be rejected at {path!r}, got {paths}"

    def test_preview_fills_every_tag_and_reserves_nothing(self, herald_incentive, herald_specs):
        """A preview grant renders every tag, is deterministic, and leaves nothing in the ledger store."""
        customer = contact_customers("kit")["reachable"]
        for spec in herald_specs:
            ctx = self.context(herald_incentive, spec, preview=True)
            grant = herald_incentive.reserve(spec, customer, ctx, AT)
            assert grant == herald_incentive.reserve(spec, customer, ctx, AT), "a preview must be deterministic"
            for tag in herald_incentive.tags:
                render_template("{{ " + tag + " }}", {herald_incentive.kind: dict(grant)})
            herald_incentive.release(spec, grant, self.grant_context(ctx))
            assert _store(ctx).count() == 0, f"{herald_incentive.kind}: a preview reserved something"

    def test_reserve_once_per_customer_then_release(self, herald_incentive, herald_specs):
        """A real reservation is held once per customer and message, in the context's ledger store (not on
        the plugin object), and ``release`` frees it: the store is left as it was."""
        spec = herald_specs[0]
        ctx = self.context(herald_incentive, spec, preview=False)
        customer = contact_customers("kit")["reachable"]
        grant = herald_incentive.reserve(spec, customer, ctx, AT)
        assert herald_incentive.reserve(spec, customer, ctx, AT) == grant, "reserving twice must return the same grant"
        assert _store(ctx).count() == 1, f"{herald_incentive.kind}: a reservation must be kept in ctx.ledger"
        other = self.context(herald_incentive, spec, preview=False)
        assert _store(other).count() == 0, "another ledger store must not see the reservation"
        herald_incentive.release(spec, grant, self.grant_context(ctx))
        assert (_store(ctx).count(), _store(ctx).held_items()) == (0, 0), "release did not give it back"

    def test_issue_is_once_per_customer_and_keeps_the_grant(self, herald_incentive, herald_specs):
        """``issue`` after ``reserve`` returns the issued grant; issuing again returns the same; a released
        issued grant stays; issuing what nobody reserved raises ``KeyError``."""
        spec = herald_specs[0]
        ctx = self.context(herald_incentive, spec, preview=False)
        customer = contact_customers("kit")["reachable"]
        grant = herald_incentive.reserve(spec, customer, ctx, AT)
        first = asyncio.run(herald_incentive.issue(spec, grant, self.grant_context(ctx)))
        later = IncentiveContext(ctx.message, ctx.ledger, AT.replace(day=AT.day + 5))
        assert asyncio.run(herald_incentive.issue(spec, grant, later)) == first, "issuing twice must return the first issue"
        herald_incentive.release(spec, grant, self.grant_context(ctx))
        assert _store(ctx).count() == 1, f"{herald_incentive.kind}: release took back an issued grant"
        empty = self.context(herald_incentive, spec, preview=False)
        with pytest.raises(KeyError):
            asyncio.run(herald_incentive.issue(spec, grant, self.grant_context(empty)))


# --- pytest plugin: fixtures available with -p engine.testing -------------------------------------------


def pytest_configure(config: Any) -> None:
    """Declare the kit's marker."""
    config.addinivalue_line("markers", "herald_contract: a Herald plugin contract test")


@pytest.fixture
def herald_registry_of():
    """A factory: ``herald_registry_of(plugin_module_or_object, …, settings=None)`` → a fresh Registry."""
    return registry_of


@pytest.fixture
def herald_contact_customers():
    """A factory: ``herald_contact_customers(channel_name)`` → the standard contact states."""
    return contact_customers


@pytest.fixture
def herald_at() -> datetime:
    """The kit's fixed evaluation instant (2026-07-04 13:30 UTC)."""
    return AT


def _store(ctx: EvaluationContext | IncentiveContext) -> InMemoryLedgerStore:
    """The kit's in-memory ledger store of ``ctx`` (it can count what is held)."""
    assert isinstance(ctx.ledger, InMemoryLedgerStore), "the kit's contexts use an in-memory ledger store"
    return ctx.ledger
