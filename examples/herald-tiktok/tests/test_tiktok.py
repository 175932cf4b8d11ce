"""The TikTok channel: Herald's contract suite, then the channel's own rules."""

from __future__ import annotations

from herald_tiktok import Tiktok

from engine import Creative, Customer, Reachability
from engine.testing import ChannelContract, kit_message


class TestTiktokContract(ChannelContract):
    """Herald's channel contract, run against this plugin."""

    channel = Tiktok({})
    contact = {"tiktok_id": "_000Hq3cTqUNM0k3f9ZrLqLrYkgKuy"}


def codes(content):
    msg = kit_message("tiktok", [Creative("tiktok", content=content)])
    return {(i.path, i.code) for i in Tiktok({}).validate(msg.creatives[0], msg)}


def test_text_is_required_and_limited():
    assert codes({"text": "Hello {{ optout }}"}) == set()
    assert codes({"link": "https://shop.example"}) == {("text", "required")}
    assert codes({"text": "x" * 1001}) == {("text", "too_long")}


def test_links_must_be_https_and_fields_known():
    assert codes({"text": "Hi {{ optout }}", "link": "http://shop.example"}) == {("link", "https_required")}
    assert codes({"text": "Hi {{ optout }}", "sticker": "wave"}) == {("sticker", "unknown_key")}


def test_reachability_needs_the_open_id():
    msg = kit_message("tiktok", [])
    assert Tiktok({}).reachability(Customer("a"), msg) == Reachability.CONTACT_UNAVAILABLE
    assert Tiktok({}).reachability(Customer("a", {"tiktok_id": "_000abc"}), msg) == Reachability.VALID


def test_render_appends_the_link():
    creative = Creative("tiktok", content={"text": "New in. {{ optout }}", "link": "https://shop.example/n"})
    payload = Tiktok({"optout_text": "STOP to end"}).render(
        creative, {"customer": {"id": "a", "tiktok_id": "_000abc"}, "optout": "STOP to end"})
    assert payload == {"recipient": {"open_id": "_000abc"},
                       "message": {"type": "text", "text": {"body": "New in. STOP to end https://shop.example/n"}}}
