"""Channels' Boolean ``reachable_expr`` (the bulk plan's form) equals ``reachability(...).reachable`` row by row."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.model import Customer, Message
from plugins.channels import email, line, push, viber, wechat

CHANNELS = {"push": (push.Push, "push_token"), "line": (line.Line, "line_id"), "viber": (viber.Viber, "viber_id"),
            "wechat": (wechat.WeChat, "wechat_openid"), "email": (email.Email, "email")}
HANDLES = st.one_of(st.none(), st.sampled_from(["", " ", "U" + "a" * 32, "U" + "A" * 32, "abc_def-123", "a" * 16,
                                                "a" * 15, "x y", "ok@example.com", "bad@@x", "tok:en.1234567890ab",
                                                "U" + "g" * 32, "u" + "a" * 32, "U" + "a" * 31 + "é", "U" + "a" * 33,
                                                "a\x1fb", "abc\n", "ab-c_d" * 11, "Z" * 4097]),
                    st.text(max_size=40))
STATUS = st.one_of(st.none(), st.sampled_from(["subscribed", "unsubscribed", "hard_bounced", "soft_bounced", "invalid",
                                               "contact_unavailable", "weird", ""]))


def channel(name: str):
    cls, _ = CHANNELS[name]
    try:
        return cls()
    except TypeError:
        return cls({})


@pytest.mark.parametrize("name", sorted(CHANNELS))
@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(HANDLES, STATUS), min_size=1, max_size=12))
def test_reachable_expr_equals_reachability(name, rows):
    ch = channel(name)
    contact = CHANNELS[name][1]
    message = Message.__new__(Message)
    frame = pl.DataFrame({f"customer.{contact}": [h for h, _ in rows],
                          f"customer.subscription.{name}": [s for _, s in rows]},
                         schema={f"customer.{contact}": pl.String, f"customer.subscription.{name}": pl.String})
    got = frame.select(ch.reachable_expr(message).alias("r"))["r"].to_list()
    want = [ch.reachability(Customer("c", {k: v for k, v in ((contact, h), (f"subscription.{name}", s)) if v is not None}),
                            message).reachable for h, s in rows]
    assert got == want


def test_the_email_column_check_trusts_the_addresses_the_reader_validated(herald, tmp_path, monkeypatch):
    import engine.columnar.contacts as contacts
    from engine.columnar import frame_from_customers, read_frame

    path = tmp_path / "a.csv"
    path.write_text("id,email\na,Asha.Patel@Example.COM\nb,no-at-sign\nc,\nd,zoë@example.org\n", encoding="utf-8")
    frame = read_frame(path, herald.catalogue, keep_valid=True, channels=herald.registry.channels).frame
    assert frame.get_column("customer.handle_type.email").to_list() == ["address", None, None, "address"]
    asked = []
    real = contacts.email_verdicts
    monkeypatch.setattr(contacts, "email_verdicts", lambda s: asked.extend(s.drop_nulls().to_list()) or real(s))
    ch, message = channel("email"), Message.__new__(Message)
    reach = frame.select(ch.reachable_expr(message).alias("r")).get_column("r").to_list()
    assert reach == [True, False, False, True] and asked == []  # no address validated a second time
    # a frame built from customers the reader never saw: every address is checked
    hand = frame_from_customers([Customer("a", {"email": "ok@example.com"}), Customer("b", {"email": "bad@@x"})])
    reach = hand.select(ch.reachable_expr(message).alias("r")).get_column("r").to_list()
    assert reach == [True, False] and asked == ["ok@example.com", "bad@@x"]
