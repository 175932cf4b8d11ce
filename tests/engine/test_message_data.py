"""Messages load from data (a mapping or text) with a ruleset resolver, not only from files next to rule files:
the seam a database of messages and stored rulesets plugs into."""

from __future__ import annotations

import pytest
import yaml

from engine.errors import MessageFileError
from engine.messages import UnresolvedRuleset
from engine.rulefiles import load_ruleset_data
from engine.rulefiles.ir import Ruleset
from engine.runtime import Herald

from ..conftest import AT, EXAMPLES


class StoredRulesets:
    """A resolver over rulesets held in memory by ``name@version`` (what a database table would hold)."""

    def __init__(self, herald: Herald, files: dict[str, str]):
        self.by_ref: dict[str, Ruleset] = {}
        self.asked: list[tuple[str, str]] = []
        for text in files.values():
            rs = load_ruleset_data(text, herald.catalogue, kinds=herald.registry.kinds,
                                   channels=set(herald.registry.channels))
            self.by_ref[f"{rs.name}@{rs.version}"] = rs

    def __call__(self, ref: str, kind: str) -> Ruleset:
        self.asked.append((ref, kind))
        if ref not in self.by_ref:
            raise UnresolvedRuleset(f"no stored ruleset {ref!r}; stored: {', '.join(sorted(self.by_ref))}")
        return self.by_ref[ref]


def sample(herald: Herald) -> tuple[dict, StoredRulesets]:
    """The sample message as data, its rule files named by stored ``name@version`` references."""
    data = yaml.safe_load((EXAMPLES / "summer-sale.message.yaml").read_text())
    files = {kind: (EXAMPLES / name).read_text() for kind, name in data["rules"].items()}
    store = StoredRulesets(herald, files)
    names = {rs.kind: ref for ref, rs in store.by_ref.items()}
    data["rules"] = {kind: names[kind] for kind in data["rules"]}
    return data, store


def test_a_message_from_data_decides_like_the_same_message_from_its_file(herald, registry, catalogue):
    data, store = sample(herald)
    from_data = herald.load_message_data(data, resolver=store, source="db:summer-sale")
    from_file = Herald(registry, catalogue).load_message(EXAMPLES / "summer-sale.message.yaml")
    assert sorted(store.asked) == sorted((ref, kind) for kind, ref in data["rules"].items())
    assert from_data.source == "db:summer-sale"
    assert {k: rs.version for k, rs in from_data.rulesets.items()} == {
        k: rs.version for k, rs in from_file.rulesets.items()}
    from engine.columnar import read_frame

    audience = read_frame(EXAMPLES / "audience.csv", herald.catalogue).frame
    a = [d.as_dict() for d in herald.evaluate(from_data, audience, at=AT, mode="per_recipient")]
    b = [d.as_dict() for d in Herald(registry, catalogue).evaluate(from_file, audience, at=AT, mode="per_recipient")]
    assert a == b and len(a) == 200


def test_a_reference_the_resolver_cannot_give_is_reported_at_the_messages_rules(herald):
    data, store = sample(herald)
    data["rules"]["personalization"] = "personalization@000000000000"
    with pytest.raises(MessageFileError) as info:
        herald.load_message_data(data, resolver=store, source="db:m1")
    (problem,) = info.value.problems
    assert problem.code == "unresolved_ruleset"
    assert str(problem).startswith("db:m1: rules.personalization: no stored ruleset 'personalization@000000000000'")


def test_text_data_keeps_line_and_column_in_errors(herald):
    data, store = sample(herald)
    data["rules"]["channel_priority"] = "nope@1"
    text = yaml.safe_dump(data, sort_keys=False)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "nope@1" in t)
    with pytest.raises(MessageFileError) as info:
        herald.load_message_data(text, resolver=store, source="db:m2")
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == ("db:m2", line)


def test_a_ruleset_of_another_kind_is_refused(herald):
    data, store = sample(herald)
    data["rules"]["personalization"] = data["rules"]["eligibility"]
    with pytest.raises(MessageFileError, match="holds a eligibility ruleset, not personalization"):
        herald.load_message_data(data, resolver=store)


def test_a_broken_stored_ruleset_reports_its_own_problems(herald):
    data, store = sample(herald)

    def broken(ref: str, kind: str) -> Ruleset:
        return load_ruleset_data("ruleset: bad\nkind: personalization\nrules: []\n", herald.catalogue,
                                 kinds=herald.registry.kinds, source=f"db:{ref}")

    with pytest.raises(MessageFileError) as info:
        herald.load_message_data(data, resolver=broken)
    assert {p.file for p in info.value.problems} == {f"db:{ref}" for ref in data["rules"].values()}


def test_hostile_data_is_refused_like_a_hostile_file(herald):
    data, store = sample(herald)
    node = data["message"]
    for _ in range(200):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(MessageFileError, match="nested deeper than the limit"):
        herald.load_message_data(data, resolver=store)
    with pytest.raises(MessageFileError, match="aliases are not allowed"):
        herald.load_message_data("a: &x 1\nb: *x\n", resolver=store)


def test_messages_from_data_are_checked_against_messages_loaded_before(herald):
    data, store = sample(herald)
    data["incentive"]["settings"]["series"] = "summer-codes"
    herald.load_message_data(data, resolver=store)
    other = {**data, "message": {**data["message"], "id": "other-sale"},
             "incentive": {**data["incentive"], "settings": {**data["incentive"]["settings"], "cap": 7}}}
    with pytest.raises(MessageFileError, match="summer-sale-2026"):
        herald.load_message_data(other, resolver=store, source="db:other")
