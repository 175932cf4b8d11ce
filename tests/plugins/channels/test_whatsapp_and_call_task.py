"""WhatsApp templates and call tasks: validation rules and payload shapes."""

from __future__ import annotations

import pytest

from engine import Creative, Customer
from engine.validation import validate_message
from plugins.channels.call_task import CallTask
from plugins.channels.whatsapp import WhatsApp
from tests.plugins.channels.common import codes, context, message, with_vars

WA = {"name": "summer_sale_2026", "language": "en_US", "category": "marketing",
      "body": "Hi {{1}}, our summer sale is on: {{2}} off until Sunday.",
      "parameters": ["{{ customer.first_name | default: 'there' }}", "{{ vars.discount }}"],
      "header_image": "https://cdn.herald.example/summer.jpg"}
TASK = {"script": "Hello {{ customer.first_name | default: 'there' }}, this is Herald calling about our summer sale.",
        "queue": "retention", "call_window": {"start": "10:00", "end": "18:00"}, "priority": "high",
        "labels": {"segment": "gold", "reason": "lapsed"},
        "outcomes": [{"name": "result", "type": "choice", "options": ["interested", "not_interested", "call_back"],
                      "required": True}, {"name": "notes", "type": "text"}]}


def wa(**content):
    return Creative("whatsapp", content={**WA, **content})


def task(**content):
    return Creative("call_task", content={**TASK, **content})


def test_real_creatives_pass(registry, catalogue):
    assert validate_message(with_vars(message(wa(), task()), discount="20%"), registry, catalogue) == []


def test_a_var_no_rule_sets_is_a_load_error(registry, catalogue):
    issues = validate_message(message(wa(), task()), registry, catalogue)
    (issue,) = [i for i in issues if i.is_error]
    assert (issue.path, issue.code) == ("creatives[0].content.parameters[1]", "unknown_var")
    assert "{{ vars.discount }}" in issue.message


@pytest.mark.parametrize("name", ["Summer_Sale", "summer-sale", "summer sale", ""])
def test_whatsapp_template_name_format(name):
    (issue,) = WhatsApp({}).validate(wa(name=name), message())
    assert issue.path == "name" and issue.code in ("format", "required")


def test_whatsapp_language_and_category():
    issues = WhatsApp({}).validate(wa(language="English", category="promotional"), message())
    assert codes(issues) == {"language": "format", "category": "enum"}
    assert codes(WhatsApp({}).validate(wa(category="UTILITY"), message())) == {}


def test_whatsapp_parameter_count_must_match_the_slots():
    (issue,) = WhatsApp({}).validate(wa(parameters=["Asha"]), message())
    assert (issue.path, issue.code) == ("parameters", "count") and "2 slots but 1 parameters" in issue.message


def test_whatsapp_slots_are_numbered_without_gaps_and_named_tags_refused():
    assert codes(WhatsApp({}).validate(wa(body="Hi {{1}}, {{3}} off"), message())) == {"body": "slots"}
    issues = WhatsApp({}).validate(wa(body="Hi {{ customer.first_name }}, {{1}} {{2}}"), message())
    assert codes(issues) == {"body": "named_tag"}


def test_whatsapp_parameters_are_single_line():
    assert codes(WhatsApp({}).validate(wa(parameters=["Asha\nK", "20%"]), message())) == {"parameters[0]": "format"}
    assert codes(WhatsApp({}).validate(wa(parameters=["Asha    K", "20%"]), message())) == {"parameters[0]": "format"}
    assert codes(WhatsApp({}).validate(wa(parameters=["Asha   K", "20%"]), message())) == {}


@pytest.mark.parametrize(("name", "problem"), [
    ("Asha\nBcc", "new line"), ("Asha\tK", "tab"), ("Asha    K", "4 or more consecutive spaces"), ("   ", "empty")])
def test_whatsapp_parameters_are_rechecked_after_rendering(name, problem):
    channel = WhatsApp({})
    ctx = context(channel, message(wa()), Customer("c1", {"whatsapp": "+919812345678", "first_name": name}), discount="20%")
    payload = channel.render(wa(), ctx)
    (issue,) = channel.compliance(payload, ctx)
    assert (issue.path, issue.code) == ("parameters[0]", "whatsapp_parameter") and problem in issue.message
    fine = context(channel, message(wa()), Customer("c1", {"whatsapp": "+919812345678", "first_name": "Asha"}), discount="20%")
    assert channel.compliance(channel.render(wa(), fine), fine) == []


def test_whatsapp_rendered_header_image_must_stay_https():
    channel = WhatsApp({})
    creative = wa(header_image="https://{{ customer.cdn }}/summer.jpg")
    ctx = context(channel, message(creative), Customer("c1", {"whatsapp": "+919812345678", "first_name": "Asha",
                                                               "cdn": ""}), discount="20%")
    (issue,) = channel.compliance(channel.render(creative, ctx), ctx)
    assert (issue.path, issue.code) == ("header_image", "https_required")


def test_whatsapp_registry_requires_an_approved_matching_template():
    registry = {"summer_sale_2026": {"language": "en_US", "category": "MARKETING", "body": WA["body"], "status": "APPROVED"}}
    assert codes(WhatsApp({"templates": registry}).validate(wa(), message())) == {}
    pending = {"summer_sale_2026": {**registry["summer_sale_2026"], "status": "PENDING"}}
    assert codes(WhatsApp({"templates": pending}).validate(wa(), message())) == {"name": "not_approved"}
    assert codes(WhatsApp({"templates": registry}).validate(wa(language="hi"), message())) == {"language": "template_mismatch"}
    assert codes(WhatsApp({"templates": {}}).validate(wa(), message())) == {"name": "unknown_template"}


def test_whatsapp_render_is_a_cloud_api_template_message():
    channel = WhatsApp({})
    ctx = context(channel, message(wa()), Customer("c1", {"whatsapp": "+91 98123 45678", "first_name": "Asha"}), discount="20%")
    assert channel.render(wa(), ctx) == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "919812345678", "type": "template",
        "template": {"name": "summer_sale_2026", "language": {"code": "en_US"}, "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.herald.example/summer.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Asha"}, {"type": "text", "text": "20%"}]}]}}


# --- call task ----------------------------------------------------------------------------------------------

def test_call_task_script_and_queue_required():
    issues = CallTask({}).validate(Creative("call_task", content={"labels": {}}), message())
    assert codes(issues) == {"script": "required", "queue": "required"}
    assert codes(CallTask({"queues": ["care"]}).validate(task(), message())) == {"queue": "unknown_queue"}


def test_call_task_window():
    assert codes(CallTask({}).validate(task(call_window={"start": "9am", "end": "18:00"}), message())) == {
        "call_window.start": "time_format"}
    assert codes(CallTask({}).validate(task(call_window={"start": "10:00", "end": "10:00"}), message())) == {
        "call_window.end": "empty_window"}


def test_call_task_outcomes_and_labels():
    outcomes = [{"name": "Result", "type": "choice", "options": ["yes"]}, {"name": "notes", "type": "essay"},
                {"name": "notes", "type": "text"}]
    issues = CallTask({}).validate(task(outcomes=outcomes, labels={"segment": 3}), message())
    assert codes(issues) == {"outcomes[0].name": "format", "outcomes[0].options": "required",
                             "outcomes[1].type": "enum", "outcomes[2].name": "duplicate", "labels.segment": "type"}


def test_call_task_render_is_a_task_for_the_queue():
    channel = CallTask({})
    customer = Customer("c1", {"phone": "+14155552671", "first_name": "Asha", "timezone": "America/Los_Angeles"})
    payload = channel.render(task(), context(channel, message(task()), customer))
    assert payload == {
        "type": "call_task", "queue": "retention", "priority": "high", "customer_id": "c1", "phone": "+14155552671",
        "script": "Hello Asha, this is Herald calling about our summer sale.",
        "labels": {"segment": "gold", "reason": "lapsed"}, "outcomes": TASK["outcomes"],
        "call_window": {"start": "10:00", "end": "18:00", "timezone": "America/Los_Angeles"}}
    assert channel.kind == "task"
