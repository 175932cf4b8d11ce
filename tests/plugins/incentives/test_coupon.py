"""The coupon series: settings validation, previews, the ledger (uniqueness, cap, one per customer), release."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from engine import (
    Campaign,
    Creative,
    Customer,
    EvaluationContext,
    IncentiveContext,
    IncentiveSpec,
    Message,
    MessageFileError,
    Schedule,
)
from engine.pipeline import Pipeline
from engine.run import evaluate
from plugins.incentives.coupon import UNAMBIGUOUS, Coupon, CouponsExhausted
from tests.conftest import EXAMPLES, RULES

AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)
CAMPAIGN = Campaign("summer-2026", "Summer 2026", date(2026, 6, 1), date(2026, 8, 31))
SMS = Creative("sms", content={"body": "Your code {{ coupon.code }}, valid until {{ coupon.expires_on }}. {{ optout }}"})


def message(**settings) -> Message:
    return Message("summer-sale", "Summer sale", CAMPAIGN, creatives=(SMS,),
                   incentive=IncentiveSpec("coupon", settings))


def ctx(msg: Message, registry, *, preview: bool) -> EvaluationContext:
    return EvaluationContext(msg, registry, AT, lambda kind, draft: (), preview)


def customers(n: int) -> list[Customer]:
    return [Customer(f"c{i:05d}", {"phone": "+919818427393"}) for i in range(n)]


def issues(spec, msg=None):
    return {(i.path, i.code, i.severity) for i in Coupon().validate(spec, msg or message(**spec))}


# --- settings -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    {"source": "generated", "alphabet": "alphanumeric", "length": 8, "cap": 50_000, "expiry": {"days": 14}},
    {"source": "generated", "alphabet": "numeric", "length": 10, "cap": 1000, "expiry": {"with_campaign": True}},
    {"source": "list", "codes": ["SUMMER-A1", "SUMMER-B2", "SUMMER-C3"], "expiry": {"date": "2026-09-30"}},
    {"source": "common", "code": "SALE20", "cap": 10_000, "expiry": {"date": "2026-08-31"}},
])
def test_valid_series_have_no_issues(spec):
    assert issues(spec) == set()


@pytest.mark.parametrize(("spec", "expected"), [
    ({"source": "printed", "expiry": {"days": 3}}, ("source", "invalid", "error")),
    ({"length": 3, "expiry": {"days": 3}}, ("length", "invalid", "error")),
    ({"length": "8", "expiry": {"days": 3}}, ("length", "invalid", "error")),
    ({"alphabet": "emoji", "expiry": {"days": 3}}, ("alphabet", "invalid", "error")),
    ({"cap": 0, "expiry": {"days": 3}}, ("cap", "invalid", "error")),
    ({"source": "list", "codes": [], "expiry": {"days": 3}}, ("codes", "required", "error")),
    ({"source": "list", "codes": ["A1", "B2", "A1"], "expiry": {"days": 3}}, ("codes[2]", "duplicate", "error")),
    ({"source": "list", "codes": ["A1", ""], "expiry": {"days": 3}}, ("codes[1]", "invalid", "error")),
    ({"source": "list", "codes": ["A1", "B2"], "cap": 5, "expiry": {"days": 3}}, ("cap", "cap_above_codes", "warning")),
    ({"source": "common", "expiry": {"days": 3}}, ("code", "required", "error")),
    ({"source": "common", "code": "SALE 20", "expiry": {"days": 3}}, ("code", "required", "error")),
    ({"source": "common", "code": "SALE20"}, ("expiry", "no_expiry", "warning")),
    ({"expiry": {"days": 3, "date": "2026-09-01"}}, ("expiry", "invalid", "error")),
    ({"expiry": {"days": 0}}, ("expiry.days", "invalid", "error")),
    ({"expiry": {"date": "31/08/2026"}}, ("expiry.date", "invalid", "error")),
    ({"expiry": {"date": "2026-05-01"}}, ("expiry.date", "before_campaign", "error")),
    ({"expiry": {"with_campaign": "yes"}}, ("expiry.with_campaign", "invalid", "error")),
    ({"colour": "red", "expiry": {"days": 3}}, ("colour", "unknown_key", "error")),
])
def test_each_settings_rule_names_its_field(spec, expected):
    assert expected in issues(spec)


def test_with_campaign_expiry_needs_a_campaign_end():
    msg = Message("m", "t", Campaign("open-ended", starts=date(2026, 1, 1)),
                  incentive=IncentiveSpec("coupon", {"expiry": {"with_campaign": True}}))
    found = Coupon().validate({"expiry": {"with_campaign": True}}, msg)
    assert [(i.path, i.code) for i in found] == [("expiry.with_campaign", "no_campaign_end")]


def test_code_space_too_small_for_the_cap_is_a_clear_error():
    found = Coupon().validate({"alphabet": "numeric", "length": 4, "cap": 20_000, "expiry": {"days": 7}}, message())
    (problem,) = found
    assert (problem.path, problem.code, problem.is_error) == ("cap", "code_space_too_small", True)
    assert "10000 distinct codes" in problem.message and "20000" in problem.message


def test_a_cap_near_the_code_space_warns_that_codes_become_guessable():
    found = Coupon().validate({"alphabet": "numeric", "length": 5, "cap": 5_000, "expiry": {"days": 7}}, message())
    assert [(i.path, i.code, i.severity) for i in found] == [("cap", "guessable_codes", "warning")]


# --- previews and reservations ------------------------------------------------------------------------

def test_a_preview_evaluation_reserves_nothing(registry):
    msg = message(length=8, cap=5, expiry={"days": 14})
    coupon = registry.incentive("coupon")
    decisions = evaluate(msg, customers(20), at=AT, registry=registry, preview=True)
    assert all(d.incentive["preview"] for d in decisions[:5])
    assert coupon.reservations(msg.incentive.settings, msg, registry.ledger) == 0  # a preview counts the cap but takes nothing
    again = evaluate(msg, customers(20), at=AT, registry=registry, preview=True)
    assert [d.incentive for d in again] == [d.incentive for d in decisions]  # deterministic
    assert evaluate(msg, customers(5), at=AT, registry=registry, preview=False)[4].included  # all 5 still free


def test_a_real_evaluation_reserves_one_unique_code_per_customer(registry):
    msg = message(length=6, expiry={"days": 14})
    first = evaluate(msg, customers(300), at=AT, registry=registry, preview=False)
    codes = [d.incentive["code"] for d in first]
    assert len(set(codes)) == 300
    assert all(len(c) == 6 and set(c) <= set(UNAMBIGUOUS) for c in codes)
    assert not set("0O1IL") & set("".join(codes))
    assert first[0].incentive["expires_on"] == "2026-07-18"
    # at most one code per customer per message: evaluating again hands back the same codes
    second = evaluate(msg, customers(300), at=AT, registry=registry, preview=False)
    assert [d.incentive["code"] for d in second] == codes
    assert registry.incentive("coupon").reservations(msg.incentive.settings, msg, registry.ledger) == 300


def test_numeric_codes_are_digits_of_the_set_length(registry):
    msg = message(alphabet="numeric", length=7, expiry={"days": 1})
    codes = {d.incentive["code"] for d in evaluate(msg, customers(50), at=AT, registry=registry, preview=False)}
    assert len(codes) == 50 and all(c.isdigit() and len(c) == 7 for c in codes)


def test_the_issue_cap_stops_further_reservations(registry):
    msg = message(length=8, cap=3, expiry={"days": 14})
    coupon, c = registry.incentive("coupon"), ctx(msg, registry, preview=False)
    for customer in customers(3):
        coupon.reserve(msg.incentive.settings, customer, c, AT)
    with pytest.raises(CouponsExhausted, match="reached its cap of 3"):
        coupon.reserve(msg.incentive.settings, Customer("late"), c, AT)
    # the three holders still get their codes back
    assert coupon.reserve(msg.incentive.settings, customers(1)[0], c, AT)["code"]


def test_a_small_code_space_is_used_up_completely_without_duplicates(registry):
    spec = {"alphabet": "numeric", "length": 4, "expiry": {"days": 1}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    c = ctx(msg, registry, preview=False)
    codes = {coupon.reserve(spec, Customer(f"c{i}"), c, AT)["code"] for i in range(10_000)}
    assert len(codes) == 10_000
    with pytest.raises(CouponsExhausted, match="all 10000 codes of length 4 are taken"):
        coupon.reserve(spec, Customer("one-too-many"), c, AT)


def test_uploaded_codes_are_handed_out_once_and_released_codes_return(registry):
    spec = {"source": "list", "codes": ["SUMMER-A1", "SUMMER-B2"], "expiry": {"date": "2026-09-30"}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    c = ctx(msg, registry, preview=False)
    a = coupon.reserve(spec, Customer("ana"), c, AT)
    b = coupon.reserve(spec, Customer("ben"), c, AT)
    assert {a["code"], b["code"]} == {"SUMMER-A1", "SUMMER-B2"}
    assert a["expires_on"] == "2026-09-30"
    with pytest.raises(CouponsExhausted, match="every uploaded coupon code"):
        coupon.reserve(spec, Customer("cai"), c, AT)
    coupon.release(spec, a, IncentiveContext(msg, registry.ledger, AT))  # ana's send failed
    assert coupon.reserve(spec, Customer("cai"), c, AT)["code"] == a["code"]


def test_a_common_code_is_shared_and_counts_against_the_cap(registry):
    spec = {"source": "common", "code": "SALE20", "cap": 2, "expiry": {"with_campaign": True}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    c = ctx(msg, registry, preview=False)
    grants = [coupon.reserve(spec, Customer(x), c, AT) for x in ("ana", "ben")]
    assert [g["code"] for g in grants] == ["SALE20", "SALE20"]
    assert grants[0]["expires_on"] == "2026-08-31"  # the campaign's end
    with pytest.raises(CouponsExhausted):
        coupon.reserve(spec, Customer("cai"), c, AT)


def test_issue_marks_the_code_sent_and_release_then_keeps_it(registry):
    spec = {"length": 8, "expiry": {"days": 10}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    grant = coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=False), AT)
    issued = asyncio.run(coupon.issue(spec, grant, IncentiveContext(msg, registry.ledger, datetime(2026, 7, 6, 9, 0, tzinfo=UTC))))
    assert issued["status"] == "issued" and issued["code"] == grant["code"]
    assert (issued["issued_on"], issued["expires_on"]) == ("2026-07-06", "2026-07-16")  # N days after issue
    coupon.release(spec, grant, IncentiveContext(msg, registry.ledger, AT))
    assert coupon.reservations(spec, msg, registry.ledger) == 1


def test_releasing_a_preview_grant_changes_nothing(registry):
    spec = {"length": 8, "expiry": {"days": 10}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=False), AT)
    preview = coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=True), AT)
    coupon.release(spec, preview, IncentiveContext(msg, registry.ledger, AT))
    assert coupon.reservations(spec, msg, registry.ledger) == 1


def test_concurrent_reservations_never_share_a_code(registry):
    spec = {"length": 5, "expiry": {"days": 10}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    c = ctx(msg, registry, preview=False)
    got: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        mine = [coupon.reserve(spec, Customer(f"t{k}-{i}"), c, AT)["code"] for i in range(400)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 3200
    assert coupon.reservations(spec, msg, registry.ledger) == 3200


def test_messages_sharing_a_series_share_its_cap(registry):
    spec = {"series": "summer-vip", "cap": 1, "expiry": {"days": 10}}
    coupon = registry.incentive("coupon")
    one = Message("m1", "t", CAMPAIGN, incentive=IncentiveSpec("coupon", spec))
    two = Message("m2", "t", CAMPAIGN, incentive=IncentiveSpec("coupon", spec))
    coupon.reserve(spec, Customer("ana"), ctx(one, registry, preview=False), AT)
    with pytest.raises(CouponsExhausted, match="summer-vip"):
        coupon.reserve(spec, Customer("ben"), ctx(two, registry, preview=False), AT)


# --- expiry counted from each recipient's send ----------------------------------------------------------

def scheduled(at: datetime | None = None, local_time: str | None = None, **settings) -> Message:
    kind = "at" if at else "immediate"
    return replace(message(**settings), schedule=Schedule(kind, at, local_time=local_time))


@pytest.mark.parametrize("preview", [True, False])
def test_days_expiry_counts_from_the_scheduled_send_not_the_evaluation(registry, preview):
    msg = scheduled(datetime(2026, 7, 10, 9, 0, tzinfo=UTC), length=8, expiry={"days": 14})
    (d,) = evaluate(msg, customers(1), at=AT, registry=registry, preview=preview)
    assert d.send_at == datetime(2026, 7, 10, 9, 0, tzinfo=UTC)
    assert d.incentive["expires_on"] == "2026-07-24"  # the send + 14 days, not the preview's day + 14


def far_apart() -> list[Customer]:
    """Two recipients whose local 09:00 sends fall on different dates: UTC+14 and UTC-11."""
    return [Customer("kiritimati", {"phone": "+919818427393", "timezone": "Pacific/Kiritimati"}),
            Customer("pago-pago", {"phone": "+919818427394", "timezone": "Pacific/Pago_Pago"})]


def test_days_expiry_counts_from_each_recipients_local_send(registry):
    msg = scheduled(local_time="09:00", length=8, expiry={"days": 14})
    east, west = evaluate(msg, far_apart(), at=AT, registry=registry, preview=False)
    assert east.send_at.date().isoformat() == "2026-07-04"  # 09:00 on the 5th in Kiritimati
    assert (east.incentive["expires_on"], west.incentive["expires_on"]) == ("2026-07-19", "2026-07-18")


def test_the_bulk_path_counts_expiry_from_each_send_as_the_per_recipient_path(registry, herald):
    msg = scheduled(local_time="09:00", length=8, expiry={"days": 14})
    run = herald.evaluate(msg, far_apart(), at=AT, mode="bulk")
    assert run.mode == "bulk"
    bulk = list(run)
    per_recipient = evaluate(msg, far_apart(), at=AT, registry=registry)
    assert [d.incentive for d in bulk] == [d.incentive for d in per_recipient]
    assert [d.incentive["expires_on"] for d in bulk] == ["2026-07-19", "2026-07-18"]


def test_a_fixed_expiry_before_the_scheduled_send_is_a_load_error():
    msg = scheduled(datetime(2026, 7, 20, 9, 0, tzinfo=UTC), expiry={"date": "2026-07-15"})
    found = Coupon().validate(msg.incentive.settings, msg)
    assert [(i.path, i.code, i.severity) for i in found] == [("expiry.date", "before_send", "error")]
    assert "2026-07-15" in found[0].message and "2026-07-20" in found[0].message
    same_day = scheduled(datetime(2026, 7, 20, 9, 0, tzinfo=UTC), expiry={"date": "2026-07-20"})
    assert Coupon().validate(same_day.incentive.settings, same_day) == []


def test_a_recipient_whose_local_send_falls_after_a_fixed_expiry_gets_no_code(registry):
    msg = scheduled(datetime(2026, 7, 15, 20, 0, tzinfo=UTC), local_time="09:00", expiry={"date": "2026-07-15"})
    tokyo = Customer("tokyo", {"phone": "+919818427393", "timezone": "Asia/Tokyo"})  # sent on the 16th
    samoa = Customer("samoa", {"phone": "+919818427394", "timezone": "Pacific/Pago_Pago"})  # 09:00 on the 15th
    late, fine = evaluate(msg, [tokyo, samoa], at=AT, registry=registry, preview=False)
    assert (late.included, late.excluded_reason) == (False, "incentive_unavailable")
    assert fine.included and fine.incentive["expires_on"] == "2026-07-15"


# --- the preview honours caps --------------------------------------------------------------------------

def mixed_audience() -> list[Customer]:
    """Recipients with and without a reachable channel, so the cap counts only those who get a message."""
    people = customers(8)
    people.insert(1, Customer("no-phone"))
    people.insert(4, Customer("also-no-phone"))
    return people


def outcome(decisions) -> list[tuple[str, bool, str | None]]:
    return [(d.customer, d.included, d.excluded_reason) for d in decisions]


def test_a_preview_refuses_the_same_recipients_beyond_the_cap_as_a_real_run(registry, herald):
    msg = message(length=8, cap=3, expiry={"days": 14})
    preview = herald.evaluate(msg, mixed_audience(), at=AT, preview=True)
    shown = list(preview)
    assert registry.incentive("coupon").reservations(msg.incentive.settings, msg, registry.ledger) == 0
    real = evaluate(msg, mixed_audience(), at=AT, registry=registry, preview=False)
    assert outcome(shown) == outcome(real)
    assert [d.customer for d in shown if d.included] == ["c00000", "c00001", "c00002"]
    assert [d.customer for d in shown if d.excluded_reason == "incentive_unavailable"] == \
        ["c00003", "c00004", "c00005", "c00006", "c00007"]
    summary = preview.summary().as_dict()
    assert (summary["included"], summary["exclusion_reasons"]["incentive_unavailable"]) == (3, 5)


def test_the_bulk_preview_refuses_the_same_recipients_and_counts_them(registry, herald):
    msg = message(length=8, cap=3, expiry={"days": 14})
    per_recipient = herald.evaluate(msg, mixed_audience(), at=AT, mode="per_recipient")
    expected = list(per_recipient)
    bulk = herald.evaluate(msg, mixed_audience(), at=AT, evaluator="columnar")
    assert bulk.mode == "bulk"
    got = list(bulk)
    assert outcome(got) == outcome(expected)
    assert [d.incentive for d in got] == [d.incentive for d in expected]
    assert [d.customer for d in got if d.included] == ["c00000", "c00001", "c00002"]
    summary = bulk.summary().as_dict()
    assert summary == per_recipient.summary().as_dict()
    assert (summary["included"], summary["channels"], summary["exclusion_reasons"]) == \
        (3, {"sms": 3}, {"incentive_unavailable": 5, "no_reachable_channel": 2})


def test_a_summary_only_bulk_run_still_counts_recipients_beyond_the_cap(registry, herald):
    from engine.columnar import frame_from_customers

    msg = message(length=8, cap=3, expiry={"days": 14})
    run = herald.evaluate(msg, frame_from_customers(mixed_audience()), at=AT, mode="bulk")
    summary = run.summary().as_dict()
    assert summary["included"] == 3 and summary["channels"] == {"sms": 3}
    assert summary["exclusion_reasons"] == {"incentive_unavailable": 5, "no_reachable_channel": 2}


def test_a_preview_counts_the_codes_a_list_series_has_left(registry):
    spec = {"source": "list", "codes": ["SUMMER-A1", "SUMMER-B2"], "expiry": {"days": 7}}
    msg = message(**spec)
    shown = evaluate(msg, customers(4), at=AT, registry=registry)
    assert [d.excluded_reason for d in shown] == [None, None, "incentive_unavailable", "incentive_unavailable"]


def test_a_preview_counts_codes_already_held_like_a_real_run(registry):
    msg = message(length=8, cap=3, expiry={"days": 14})
    people = customers(8)
    held = evaluate(msg, people[:2], at=AT, registry=registry, preview=False)  # c0 and c1 hold codes
    audience = [people[5], people[0], people[6], people[7], people[1]]
    shown = evaluate(msg, audience, at=AT, registry=registry, preview=True)
    assert shown[1].incentive["code"] == held[0].incentive["code"]  # what will really be sent
    real = evaluate(msg, audience, at=AT, registry=registry, preview=False)
    assert outcome(shown) == outcome(real)
    assert [d.included for d in real] == [True, True, False, False, True]


# --- code space and shared series ------------------------------------------------------------------------

def test_a_generated_series_too_small_for_the_audience_is_an_error_without_a_cap(registry):
    msg = message(alphabet="numeric", length=4, expiry={"days": 7})
    with pytest.raises(MessageFileError) as err:
        evaluate(msg, customers(10_001), at=AT, registry=registry)
    (problem,) = err.value.problems
    assert (problem.path, problem.code) == ("incentive.settings.length", "code_space_too_small")
    assert "10000 distinct codes" in problem.message and "10001 recipients" in problem.message
    Pipeline(msg, registry, at=AT).prepare(10_000)  # exactly enough: no error


def test_a_cap_within_the_code_space_serves_any_audience(registry):
    msg = message(alphabet="numeric", length=4, cap=50, expiry={"days": 7})
    Pipeline(msg, registry, at=AT).prepare(20_000)  # the cap refuses the rest, one by one


def test_codes_already_taken_count_against_the_space_left(registry):
    spec = {"series": "tiny", "alphabet": "numeric", "length": 4, "expiry": {"days": 7}}
    one = replace(message(**spec), id="m1")
    evaluate(one, customers(9_000), at=AT, registry=registry, preview=False)
    two = replace(message(**spec), id="m2")
    with pytest.raises(MessageFileError, match="9000 already taken: too few for 1001 recipients"):
        Pipeline(two, registry, at=AT).prepare(1_001)


def copy_rules(folder) -> None:
    """The example's rule files and the sample field catalogue, next to a message written in ``folder``."""
    for name in ("eligibility.yaml", "personalization.yaml", "channel-priority.yaml"):
        (folder / name).write_text((EXAMPLES / name).read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "fields.yaml").write_text((RULES / "fields.yaml").read_text(encoding="utf-8"), encoding="utf-8")


def test_the_cli_refuses_an_audience_the_code_space_cannot_serve(tmp_path):
    from typer.testing import CliRunner

    from service.cli import app

    text = (EXAMPLES / "summer-sale.message.yaml").read_text(encoding="utf-8")
    text = text.replace("settings: {source: generated, length: 8, expiry: {days: 14}}",
                        "settings: {source: generated, alphabet: numeric, length: 4, expiry: {days: 14}}")
    (tmp_path / "m.message.yaml").write_text(text, encoding="utf-8")
    copy_rules(tmp_path)
    rows = "\n".join(f"c{i},+9198184{i:05d}" for i in range(10_001))
    (tmp_path / "aud.csv").write_text("id,phone\n" + rows + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["evaluate", "-m", str(tmp_path / "m.message.yaml"), "-a", str(tmp_path / "aud.csv"),
                                      "--at", "2026-06-30T10:00:00+00:00", "--summary"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "10000 distinct codes" in result.stderr and "10001 recipients" in result.stderr
    assert "incentive.settings.length" in result.stderr


def series_message(tmp_path, name: str, cap: int):
    text = (EXAMPLES / "summer-sale.message.yaml").read_text(encoding="utf-8")
    text = text.replace("id: summer-sale-2026", f"id: {name}").replace(
        "settings: {source: generated, length: 8, expiry: {days: 14}}",
        f"settings: {{series: summer-vip, length: 8, cap: {cap}, expiry: {{days: 14}}}}")
    path = tmp_path / f"{name}.message.yaml"
    path.write_text(text, encoding="utf-8")
    copy_rules(tmp_path)
    return path


def test_messages_sharing_a_series_with_different_caps_are_refused_naming_both(tmp_path, herald):
    first = herald.load_message(series_message(tmp_path, "vip-sms", 500))
    herald.load_message(series_message(tmp_path, "vip-sms-again", 500))  # same settings: fine
    with pytest.raises(MessageFileError) as err:
        herald.load_message(series_message(tmp_path, "vip-email", 800))
    problem, again = err.value.problems  # one per message it conflicts with
    assert (problem.path, problem.code) == ("incentive.settings.cap", "shared_conflict")
    assert "'vip-sms-again'" in again.message
    assert "'vip-email'" in problem.message and "'vip-sms'" in problem.message and "coupon series 'summer-vip'" in problem.message
    assert "500" in problem.message and "800" in problem.message and first.source in problem.message


def test_check_messages_finds_conflicts_in_a_list(tmp_path, herald):
    from engine.sharing import check_messages

    one = herald.load_message(series_message(tmp_path, "a", 10))
    two = replace(one, id="b", incentive=IncentiveSpec("coupon", {**one.incentive.settings, "cap": 20}))
    assert [p.code for p in check_messages([one, two], herald.registry)] == ["shared_conflict"]
    assert check_messages([one, replace(one, id="c")], herald.registry) == []


def test_evaluating_a_series_another_message_created_with_another_cap_is_refused(registry):
    spec = {"series": "summer-vip", "cap": 1, "expiry": {"days": 10}}
    one = Message("m1", "t", CAMPAIGN, creatives=(SMS,), incentive=IncentiveSpec("coupon", spec))
    two = Message("m2", "t", CAMPAIGN, creatives=(SMS,), incentive=IncentiveSpec("coupon", {**spec, "cap": 5}))
    evaluate(one, customers(1), at=AT, registry=registry, preview=False)
    with pytest.raises(MessageFileError, match="'m1' and 'm2' share coupon series 'summer-vip'.*cap: 1 in 'm1', 5 in 'm2'"):
        evaluate(two, customers(1), at=AT, registry=registry)


# --- warnings reach the user ----------------------------------------------------------------------------

def test_coupon_warnings_are_returned_by_validate_message(tmp_path, herald):
    from engine.validation import validate_message

    text = (EXAMPLES / "summer-sale.message.yaml").read_text(encoding="utf-8").replace(
        "settings: {source: generated, length: 8, expiry: {days: 14}}",
        "settings: {source: generated, alphabet: numeric, length: 5, cap: 5000}")
    path = tmp_path / "m.message.yaml"
    path.write_text(text, encoding="utf-8")
    copy_rules(tmp_path)
    msg = herald.load_message(path)  # warnings do not stop the load
    found = {(i.path, i.code, i.severity) for i in validate_message(msg, herald.registry, herald.catalogue)}
    assert found >= {("incentive.settings.expiry", "no_expiry", "warning"),
                     ("incentive.settings.cap", "guessable_codes", "warning")}


def test_a_new_version_of_a_message_cannot_silently_change_its_series_cap(registry):
    msg = message(cap=2, expiry={"days": 10})
    evaluate(msg, customers(1), at=AT, registry=registry, preview=False)
    edited = message(cap=3, expiry={"days": 10})
    with pytest.raises(MessageFileError, match="'summer-sale' created coupon series 'summer-sale'.*cap: 2 in"):
        evaluate(edited, customers(3), at=AT, registry=registry)


# --- the ledger lives in a store, not on the plugin --------------------------------------------------------

def in_store(msg: Message, registry, store) -> EvaluationContext:
    return EvaluationContext(msg, registry, AT, lambda kind, draft: (), False, ledger=store)


def test_two_plugin_instances_over_one_store_share_the_ledger_and_two_stores_are_independent(registry):
    from engine import InMemoryLedgerStore

    spec = {"source": "list", "codes": ["A1", "B2"], "expiry": {"days": 3}}
    msg, shared, other = message(**spec), InMemoryLedgerStore(), InMemoryLedgerStore()
    one, two = Coupon(), Coupon()
    ana = one.reserve(spec, Customer("ana"), in_store(msg, registry, shared), AT)
    assert two.reserve(spec, Customer("ana"), in_store(msg, registry, shared), AT) == ana  # same grant
    ben = two.reserve(spec, Customer("ben"), in_store(msg, registry, shared), AT)
    assert {ana["code"], ben["code"]} == {"A1", "B2"}
    with pytest.raises(CouponsExhausted):
        one.reserve(spec, Customer("cai"), in_store(msg, registry, shared), AT)
    assert two.reserve(spec, Customer("cai"), in_store(msg, registry, other), AT)["code"] == "A1"
    assert vars(one) == vars(two) == {}  # the plugin objects hold no state
    two.release(spec, ana, IncentiveContext(msg, shared, AT))
    assert one.reserve(spec, Customer("cai"), in_store(msg, registry, shared), AT)["code"] == ana["code"]


def test_two_runs_with_the_same_store_see_the_same_ledger(registry):
    from engine import InMemoryLedgerStore
    from engine.plugin_manager import make_plugin_manager
    from engine.registry import Registry
    from plugins import DEFAULT_PLUGINS

    msg, store = message(length=8, cap=2, expiry={"days": 3}), InMemoryLedgerStore()
    first = list(Pipeline(msg, registry, at=AT, preview=False, ledger=store).run(customers(2)))
    elsewhere = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False), ledger=store)  # another process
    again = list(Pipeline(msg, elsewhere, at=AT, preview=False).run(customers(3)))
    assert [d.incentive["code"] for d in again[:2]] == [d.incentive["code"] for d in first]
    assert again[2].excluded_reason == "incentive_unavailable"  # the cap of 2 is shared through the store
    assert registry.incentive("coupon").reservations(msg.incentive.settings, msg, registry.ledger) == 0
    fresh = list(Pipeline(msg, registry, at=AT, preview=False).run(customers(3)))
    assert [d.included for d in fresh] == [True, True, False]
    assert {d.incentive["code"] for d in fresh[:2]}.isdisjoint(d.incentive["code"] for d in first)


def test_a_preview_reads_the_store_it_is_given(registry):
    from engine import InMemoryLedgerStore

    msg, store = message(length=8, cap=1, expiry={"days": 3}), InMemoryLedgerStore()
    taken = evaluate(msg, customers(1), at=AT, registry=registry, preview=False)[0].incentive["code"]
    assert [d.included for d in Pipeline(msg, registry, at=AT, ledger=store).run(customers(2))] == [True, False]
    shown = list(Pipeline(msg, registry, at=AT).run(customers(2)))  # the registry's store: c00000 holds a code
    assert shown[0].incentive["code"] == taken and not shown[1].included
