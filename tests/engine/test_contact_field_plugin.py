"""A plugin adds a contact channel with its own contact field, and nothing in engine/ changes.

The test plugin registers ``kakao_id`` (a KakaoTalk id: lower-cased, 4 to 20 letters, digits, ``_`` and
``.``) with its normaliser, and a ``kakao`` channel reaching customers through it with ``ContactReach``. Both
audience readers normalise the column the same way, a malformed id makes only that channel ``invalid`` with
the plugin's own reason, and a message on the channel decides per recipient and in bulk alike. Without the
plugin — or without a built-in channel's plugin — the column is an ordinary attribute.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import polars as pl
import pytest

from engine import (
    ContactField,
    ContactReach,
    ContactReachability,
    Creative,
    Issue,
    Message,
    SendContext,
    SendResult,
    hookimpl,
    render_content,
    transport_send,
)
from engine.audience import read_audience
from engine.columnar import read_frame
from engine.columnar.decisions import customer_of
from engine.fields import build_catalogue, load_org_fields
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS

from ..conftest import AT, ROOT, RULES

KAKAO_ID = re.compile(r"[a-z0-9_.]{4,20}")
RULE = "a KakaoTalk id: 4 to 20 letters, digits, _ and ."


def normalise_kakao(value: str) -> str:
    """The id trimmed and lower-cased; ``ValueError`` in the plugin's words otherwise."""
    handle = value.strip().lower()
    if not KAKAO_ID.fullmatch(handle):
        raise ValueError(f"kakao_id {value!r} is not a KakaoTalk id (4 to 20 letters, digits, _ and .)")
    return handle


class Kakao(ContactReachability):
    """A KakaoTalk channel: one text message to the customer's ``kakao_id`` (trusting the reader's check)."""

    name = "kakao"
    kind = "direct"
    cost = 0.002
    tags: Mapping[str, Any] = {}
    required_tags: tuple[str, ...] = ()
    creative_schema: Mapping[str, Any] = {"type": "object", "required": ["text"],
                                          "properties": {"text": {"type": "string", "minLength": 1}},
                                          "additionalProperties": False}
    reach = ContactReach("kakao", "kakao_id", rule=RULE)

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        text = creative.content.get("text")
        return [] if isinstance(text, str) and text.strip() else [Issue("text", "required", "the text is required")]

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"to": context["customer"].get("kakao_id"), "text": render_content(creative.content["text"], context)}

    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        return await transport_send(self.name, payload, ctx, to=payload.get("to"))


class KakaoPlugin:
    """The third-party plugin: the contact field and the channel using it."""

    __name__ = "herald_kakao"

    @hookimpl
    def register_contact_fields(self, register):
        register(ContactField("kakao_id", "KakaoTalk user id", normalise=normalise_kakao, rule=RULE))

    @hookimpl
    def register_channels(self, register):
        register(Kakao())


AUDIENCE = """\
id,phone,kakao_id,subscription.kakao
k1,+14155550123,  Asha.Kim ,
k2,+14155550124,bad id!,
k3,,Lee_99,
k4,+14155550125,,
k5,+14155550126,ASHA.KIM,unsubscribed
k6,,x,
"""

MESSAGE = """\
message:
  id: kakao-sale
  title: Kakao sale
  campaign: {id: c1, starts: 2026-06-01, ends: 2026-12-31}
channels: [kakao, sms]
creatives:
  - channel: kakao
    content: {text: "Sale today, {{ customer.kakao_id }}"}
  - channel: sms
    content: {body: "Sale today. {{ optout }}"}
schedule: {kind: at, at: 2026-07-04T15:00:00+00:00}
delivery:
  senders:
    sms: {sender_id: HERALD}
"""


def herald_with(plugins=DEFAULT_PLUGINS, *extra) -> Herald:
    registry = Registry.build(make_plugin_manager((*plugins, *extra), entry_points=False))
    return Herald(registry, build_catalogue((r.obj for r in registry.fields.values()),
                                            load_org_fields(RULES / "fields.yaml"), registry.contacts.values()))


def both_readers(path, herald, columnar_path=None):
    """(customer id, attributes) per customer, as the row reader reads ``path`` and the columnar reader
    ``columnar_path`` (default: ``path``; the row reader reads no Parquet)."""
    rows = [(c.id, dict(c.attributes)) for c in read_audience(path, herald.catalogue).customers]
    frame = read_frame(columnar_path or path, herald.catalogue).frame
    return rows, [(c.id, dict(c.attributes)) for c in map(customer_of, frame.iter_rows(named=True))]


def test_the_plugin_field_is_registered_listed_and_offered_to_rules():
    herald = herald_with(DEFAULT_PLUGINS, KakaoPlugin())
    assert herald.registry.contact_fields["kakao_id"].owners == ("herald_kakao",)
    assert ("kakao_id", "contact", "herald_kakao") in herald.registry.rows()
    assert herald.catalogue.lookup("customer.kakao_id").description == "KakaoTalk user id"
    assert herald_with().catalogue.lookup("customer.kakao_id") is None


@pytest.mark.parametrize("form", ["csv", "jsonl", "parquet"])
def test_both_readers_normalise_the_plugin_field_the_same_way(tmp_path, form):
    herald = herald_with(DEFAULT_PLUGINS, KakaoPlugin())
    path = tmp_path / "a.csv"
    path.write_text(AUDIENCE, encoding="utf-8")
    other = path
    if form != "csv":
        table = pl.read_csv(path, infer_schema=False)
        other = tmp_path / f"a.{form}"
        table.write_parquet(other) if form == "parquet" else table.write_ndjson(other)
        path = other if form == "jsonl" else path
    rows, columns = both_readers(path, herald, other)
    assert rows == columns
    got = dict(rows)
    assert got["k1"]["kakao_id"] == "asha.kim" and "handle_error.kakao_id" not in got["k1"]
    assert got["k2"]["kakao_id"] == "bad id!"
    assert got["k2"]["handle_error.kakao_id"] == "kakao_id 'bad id!' is not a KakaoTalk id (4 to 20 letters, digits, _ and .)"
    assert "handle_error.phone" not in got["k2"]  # only that handle is marked
    assert got["k3"]["kakao_id"] == "lee_99" and got["k5"]["kakao_id"] == "asha.kim"


def test_a_message_on_the_plugin_channel_decides_per_recipient_and_in_bulk_alike(tmp_path):
    herald = herald_with(DEFAULT_PLUGINS, KakaoPlugin())
    (tmp_path / "a.csv").write_text(AUDIENCE, encoding="utf-8")
    (tmp_path / "kakao.message.yaml").write_text(MESSAGE, encoding="utf-8")
    message = herald.load_message(tmp_path / "kakao.message.yaml")
    frame = read_frame(tmp_path / "a.csv", herald.catalogue, channels=herald.registry.channels).frame
    per_recipient = herald.evaluate(message, frame, at=AT, mode="per_recipient", evaluator="reference")
    bulk = herald.evaluate(message, frame, at=AT, mode="bulk", evaluator="columnar")
    assert bulk.mode == "bulk"
    want = [d.as_dict() for d in per_recipient]
    assert [d.as_dict() for d in bulk] == want
    assert [(d["customer"], d["channel"], d["excluded_reason"]) for d in want] == [
        ("k1", "kakao", None), ("k2", "sms", None), ("k3", "kakao", None), ("k4", "sms", None),
        ("k5", "sms", None), ("k6", None, "no_reachable_channel")]
    explained = {d.customer: d for d in herald.evaluate(message, frame, at=AT, mode="per_recipient", explain=True)}
    drops = {c: {s.detail["channel"]: (s.detail["why"], s.detail.get("reason")) for s in d.trace
                 if s.event == "channel_dropped"} for c, d in explained.items()}
    assert drops["k2"] == {"kakao": ("invalid", "kakao_id 'bad id!' is not a KakaoTalk id (4 to 20 letters, "
                                                "digits, _ and .)")}
    assert drops["k6"]["kakao"] == ("invalid", "kakao_id 'x' is not a KakaoTalk id (4 to 20 letters, digits, _ and .)")
    assert drops["k5"]["kakao"] == ("unsubscribed", "subscription.kakao is recorded as 'unsubscribed'")


def test_without_the_plugin_the_column_is_an_ordinary_attribute(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(AUDIENCE, encoding="utf-8")
    rows, columns = both_readers(path, herald_with())
    assert rows == columns
    got = dict(rows)
    assert got["k1"]["kakao_id"] == "  Asha.Kim " and got["k2"] == {"phone": "+14155550124", "kakao_id": "bad id!",
                                                                    "handle_type.phone": "fixed_line_or_mobile"}


def test_disabling_a_built_in_channel_plugin_removes_its_contact_field(tmp_path):
    without = [p for p in DEFAULT_PLUGINS if p != "plugins.channels.whatsapp"]
    herald = herald_with(without)
    assert "whatsapp" not in herald.registry.contacts and herald.catalogue.lookup("customer.whatsapp") is None
    assert herald.registry.contact_fields["phone"].owners == (
        "plugins.channels.sms", "plugins.channels.call_task", "plugins.channels.ads")  # others still read phone
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "w1", "whatsapp": "+91 98123 45678"}\n{"id": "w2", "whatsapp": "12"}\n'
                    '{"id": "w3", "whatsapp": "+1555"}\n', encoding="utf-8")
    rows, columns = both_readers(path, herald)
    assert rows == columns == [("w1", {"whatsapp": "+91 98123 45678"}), ("w2", {"whatsapp": "12"}),
                               ("w3", {"whatsapp": "+1555"})]  # kept as read: no E.164, no marks
    rows, columns = both_readers(path, herald_with())
    assert rows == columns
    assert rows[0] == ("w1", {"whatsapp": "+919812345678", "handle_type.whatsapp": "mobile"})
    assert rows[2] == ("w3", {"whatsapp": "+1555", "handle_error.whatsapp": "whatsapp '+1555' is not a valid number"})
    numbers = tmp_path / "n.jsonl"
    numbers.write_text('{"id": "w1", "whatsapp": 919812345678}\n', encoding="utf-8")
    rows, columns = both_readers(numbers, herald)
    assert rows == columns == [("w1", {"whatsapp": 919812345678})]  # a free attribute keeps its JSON number


def test_the_engine_names_no_contact_field_a_plugin_registers():
    """The engine holds no list of contact handles: no code in engine/ names the handles it has no normaliser
    for (the contract kit's sample customer, engine/testing.py, fills the built-in channels' handles)."""
    import ast

    offenders = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        if path.name == "testing.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(
            n, ast.Module | ast.ClassDef | ast.FunctionDef) and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in docs and node.value in (
                    "push_token", "line_id", "viber_id", "wechat_openid", "kakao_id"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
            if isinstance(node, ast.Name | ast.alias) and getattr(node, "id", getattr(node, "name", "")) in (
                    "CONTACT_FIELDS", "CHECKERS", "PHONES", "_CHECKS"):
                offenders.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}: a list of contact fields")
    assert offenders == []
