"""LINE, Viber and WeChat: validation rules and provider payload shapes."""

from __future__ import annotations

from engine import Creative, Customer
from engine.validation import validate_message
from plugins.channels.line import Line
from plugins.channels.viber import Viber
from plugins.channels.wechat import WeChat
from tests.plugins.channels.common import codes, context, message, with_vars

LINE_ID = "U" + "4af4980629" * 3 + "ab"
IMG = "https://cdn.herald.example/summer.jpg"
LINE = {"messages": [{"type": "text", "text": "{{ customer.first_name | default: 'Hi' }}, 20% off this weekend!"},
                     {"type": "image", "original_url": IMG, "preview_url": "https://cdn.herald.example/summer-s.jpg"}]}
VIBER = {"text": "Summer sale: 20% off everything", "image": IMG,
         "button": {"caption": "Shop now", "url": "https://shop.example/sale?c={{ customer.id }}"}}
VIBER_SENDER = {"viber": {"name": "Herald Shop"}}
WECHAT = {"template_id": "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY", "url": "https://shop.example/sale",
          "data": {"first": {"value": "Summer sale", "color": "#173177"}, "keyword1": "{{ vars.discount }} off",
                   "remark": "Until Sunday"}}


def test_real_creatives_pass(registry, catalogue):
    msg = message(Creative("line", content=LINE), Creative("viber", content=VIBER), Creative("wechat", content=WECHAT),
                  senders=VIBER_SENDER)
    assert validate_message(with_vars(msg, discount="20%"), registry, catalogue) == []


# --- LINE ---------------------------------------------------------------------------------------------------

def test_line_text_limit():
    long = {"messages": [{"type": "text", "text": "x" * 5001}]}
    (issue,) = Line({}).validate(Creative("line", content=long), message())
    assert (issue.path, issue.code) == ("messages[0].text", "too_long") and "5000" in issue.message
    ok = {"messages": [{"type": "text", "text": "x" * 5000}]}
    assert Line({}).validate(Creative("line", content=ok), message()) == []


def test_line_messages_required_and_at_most_five():
    assert codes(Line({}).validate(Creative("line", content={}), message())) == {"messages": "required"}
    six = {"messages": [{"type": "text", "text": "hi"}] * 6}
    assert codes(Line({}).validate(Creative("line", content=six), message())) == {"messages": "too_many"}


def test_line_image_urls_are_https_and_types_known():
    bad = {"messages": [{"type": "image", "original_url": "http://cdn.example/a.jpg"}, {"type": "video"},
                        {"type": "image"}]}
    assert codes(Line({}).validate(Creative("line", content=bad), message())) == {
        "messages[0].original_url": "https_required", "messages[1].type": "enum", "messages[2].original_url": "required"}


def test_line_render_is_a_push_request():
    channel = Line({})
    creative = Creative("line", content=LINE)
    ctx = context(channel, message(creative), Customer("c1", {"line_id": LINE_ID, "first_name": "Asha"}))
    assert channel.render(creative, ctx) == {"to": LINE_ID, "messages": [
        {"type": "text", "text": "Asha, 20% off this weekend!"},
        {"type": "image", "originalContentUrl": IMG, "previewImageUrl": "https://cdn.herald.example/summer-s.jpg"}]}


# --- Viber --------------------------------------------------------------------------------------------------

def test_viber_text_limit():
    (issue,) = Viber({}).validate(Creative("viber", content={"text": "x" * 1001}), message(senders=VIBER_SENDER))
    assert (issue.path, issue.code) == ("text", "too_long") and "1000" in issue.message


def test_viber_button_needs_caption_and_url():
    for button, path in (({"url": "https://shop.example"}, "button.caption"), ({"caption": "Shop"}, "button.url")):
        issues = Viber({}).validate(Creative("viber", content={**VIBER, "button": button}), message(senders=VIBER_SENDER))
        (issue,) = issues
        assert (issue.path, issue.code) == (path, "required")
    bad_url = {**VIBER, "button": {"caption": "Shop", "url": "shop.example"}}
    assert codes(Viber({}).validate(Creative("viber", content=bad_url), message(senders=VIBER_SENDER))) == {"button.url": "url"}


def test_viber_image_https_and_sender_name():
    issues = Viber({}).validate(Creative("viber", content={**VIBER, "image": "ftp://x/y.jpg"}), message())
    assert codes(issues) == {"image": "https_required", "delivery.senders.viber.name": "sender_required"}
    long_name = message(senders={"viber": {"name": "A sender name that is far too long"}})
    assert codes(Viber({}).validate(Creative("viber", content=VIBER), long_name)) == {"delivery.senders.viber.name": "sender_too_long"}
    assert codes(Viber({"sender_name": "Herald"}).validate(Creative("viber", content=VIBER), message())) == {}


def test_viber_sender_issue_points_at_the_message_delivery_settings(registry, catalogue):
    found = validate_message(message(Creative("viber", content=VIBER)), registry, catalogue)
    assert [(i.path, i.code) for i in found if i.is_error] == [("delivery.senders.viber.name", "sender_required")]


def test_viber_render_is_a_send_message_request():
    channel = Viber({})
    creative = Creative("viber", content=VIBER)
    ctx = context(channel, message(creative, senders=VIBER_SENDER), Customer("c1", {"viber_id": "01234567890A="}))
    assert channel.render(creative, ctx) == {
        "receiver": "01234567890A=", "min_api_version": 1, "sender": {"name": "Herald Shop"},
        "type": "picture", "text": "Summer sale: 20% off everything", "media": IMG,
        "keyboard": {"Type": "keyboard", "DefaultHeight": False, "Buttons": [
            {"ActionType": "open-url", "ActionBody": "https://shop.example/sale?c=c1", "Text": "Shop now",
             "Columns": 6, "Rows": 1}]}}
    text_only = Creative("viber", content={"text": "Hi"})
    assert channel.render(text_only, ctx)["type"] == "text"


# --- WeChat -------------------------------------------------------------------------------------------------

def test_wechat_template_id_and_data_required():
    issues = WeChat({}).validate(Creative("wechat", content={"url": "https://shop.example"}), message())
    assert codes(issues) == {"template_id": "required", "data": "required"}


def test_wechat_registered_templates_need_exactly_their_fields():
    channel = WeChat({"templates": {WECHAT["template_id"]: ["first", "keyword1", "keyword2", "remark"]}})
    issues = channel.validate(Creative("wechat", content=WECHAT), message())
    (issue,) = issues
    assert (issue.path, issue.code) == ("data.keyword2", "required")
    other = WeChat({"templates": {"other": ["first"]}}).validate(Creative("wechat", content=WECHAT), message())
    assert codes(other) == {"template_id": "unknown_template"}


def test_wechat_colours_and_url():
    content = {**WECHAT, "url": "weixin://x", "data": {"first": {"value": "Hi", "color": "blue"}}}
    assert codes(WeChat({}).validate(Creative("wechat", content=content), message())) == {
        "url": "url", "data.first.color": "format"}


def test_wechat_render_is_a_template_message():
    channel = WeChat({})
    creative = Creative("wechat", content=WECHAT)
    openid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    ctx = context(channel, message(creative), Customer("c1", {"wechat_openid": openid}), discount="20%")
    assert channel.render(creative, ctx) == {
        "touser": openid, "template_id": WECHAT["template_id"], "url": "https://shop.example/sale",
        "data": {"first": {"value": "Summer sale", "color": "#173177"}, "keyword1": {"value": "20% off"},
                 "remark": {"value": "Until Sunday"}}}
