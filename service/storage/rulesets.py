"""Stored rulesets: uploaded as YAML or JSON text, checked by the engine exactly as a rule file is, their
``tests:`` run at upload, kept immutably under their content-hash version, and resolved for messages.

A ruleset's version is the engine's ``ruleset_version`` (a hash of what the rules do: descriptions, the owner
and the tests are left out), so uploading the same rules again gives the same version and stores nothing new.
Messages name a ruleset as ``name@version`` (pinned) or ``name`` (its latest version).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, func, select

from engine.errors import Problem, ValidationFailed
from engine.fields import FieldCatalogue
from engine.messages import UnresolvedRuleset
from engine.registry import Registry
from engine.rulefiles import load_ruleset_data, run_rule_tests
from engine.rulefiles.ir import Ruleset
from engine.sourcefile import parse_text
from service.storage.tables import StoredRuleset

#: the evaluator a ruleset's tests run on at upload (the engine's default, as ``herald rules test``)
TEST_EVALUATOR = "compiled"


class RulesetRejected(Exception):
    """An upload the engine refuses (it does not load, or one of its tests fails): ``items`` are
    ``{path, code, message}`` with ``path`` as ``file:line:column``."""

    def __init__(self, detail: str, items: Sequence[dict[str, str]]):
        super().__init__(detail)
        self.detail = detail
        self.items = list(items)


class KindChanged(Exception):
    """A new version of a stored ruleset names another kind than its earlier versions."""


@dataclasses.dataclass(frozen=True)
class CheckedRuleset:
    """A ruleset the engine accepted: compiled, and the outcome of its tests (all passed)."""

    ruleset: Ruleset
    tests: dict[str, Any]


def problem_item(p: Problem) -> dict[str, str]:
    """An engine problem as a ``{path, code, message}`` item, ``path`` being ``file:line:column``."""
    where = p.file or ""
    if p.line is not None:
        where += f":{p.line}" + (f":{p.column}" if p.column is not None else "")
    message = f"{p.path}: {p.message}" if p.path else p.message
    return {"path": where, "code": p.code, "message": message}


def _channels(registry: Registry) -> set[str]:
    # as engine.messages.FileRulesetResolver: channels of plugins the allow/deny lists leave out load too, so
    # that the message naming them reports the missing plugin
    return set(registry.channels) | (registry.left_out_names("channel") if registry.left_out else set())


def check_ruleset(text: str, registry: Registry, catalogue: FieldCatalogue, *, source: str) -> CheckedRuleset:
    """Load ``text`` as ``herald rules check`` loads a rule file (``source`` names it in positions) and run its
    ``tests:`` as ``herald rules test`` does; :class:`RulesetRejected` lists every problem or failing test."""
    try:
        ruleset = load_ruleset_data(text, catalogue, kinds=registry.kinds, source=source,
                                    channels=set(registry.channels))
    except ValidationFailed as exc:  # RuleFileError included: every problem, at its line and column
        raise RulesetRejected(exc.summary, [problem_item(p) for p in exc.problems]) from None
    evaluator = registry.evaluator(TEST_EVALUATOR)
    positions = parse_text(text, source)  # the same parse, for the line of each failing example
    failures, examples = [], []
    for n, test in enumerate(ruleset.tests):
        found = run_rule_tests(dataclasses.replace(ruleset, tests=(test,)), evaluator, registry.kinds)
        examples.append({"name": test.get("name") or f"tests[{n}]", "passed": not found, "failures": found})
        failures += [problem_item(positions.problem(f, ("tests", n), "test_failed", f"tests[{n}]")) for f in found]
    if failures:
        raise RulesetRejected(f"{source}: {len(failures)} failing test expectation(s) in ruleset {ruleset.name}",
                              failures)
    passed = sum(1 for e in examples if e["passed"])
    return CheckedRuleset(ruleset, {"evaluator": TEST_EVALUATOR, "passed": passed, "failed": len(examples) - passed,
                                    "examples": examples})


def upload(session: Session, org_id: int, user_id: int, text: str, registry: Registry, catalogue: FieldCatalogue,
           *, source: str) -> tuple[StoredRuleset, bool]:
    """Check and store a ruleset; ``(row, created)``: the same rules uploaded again return the stored version
    (``created`` false). :class:`RulesetRejected` when the engine refuses it, :class:`KindChanged` when the
    name's earlier versions are of another kind."""
    checked = check_ruleset(text, registry, catalogue, source=source)
    rs = checked.ruleset
    existing = get_version(session, org_id, rs.name, rs.version)
    if existing is not None:
        return existing, False
    previous = latest(session, org_id, rs.name)
    if previous is not None and previous.kind != rs.kind:
        raise KindChanged(f"ruleset {rs.name!r} is a {previous.kind} ruleset; a new version cannot be {rs.kind} "
                          "(upload it under another name)")
    row = StoredRuleset(org_id=org_id, name=rs.name, kind=rs.kind, version=rs.version, source=text,
                        tests=checked.tests, created_by=user_id)
    session.add(row)
    session.flush()
    return row, True


def get_version(session: Session, org_id: int, name: str, version: str) -> StoredRuleset | None:
    """One stored version of the org's ruleset ``name`` (``None`` when there is none)."""
    return session.exec(select(StoredRuleset).where(StoredRuleset.org_id == org_id, StoredRuleset.name == name,
                                                    StoredRuleset.version == version)).first()


def latest(session: Session, org_id: int, name: str) -> StoredRuleset | None:
    """The newest stored version of the org's ruleset ``name`` (``None`` when there is none)."""
    return session.exec(select(StoredRuleset).where(StoredRuleset.org_id == org_id, StoredRuleset.name == name)
                        .order_by(col(StoredRuleset.id).desc()).limit(1)).first()


def versions(session: Session, org_id: int, name: str) -> Sequence[StoredRuleset]:
    """Every stored version of the org's ruleset ``name``, newest first."""
    return session.exec(select(StoredRuleset).where(StoredRuleset.org_id == org_id, StoredRuleset.name == name)
                        .order_by(col(StoredRuleset.id).desc())).all()


def names(session: Session, org_id: int, *, after: str = "", limit: int = 100) -> list[tuple[StoredRuleset, int]]:
    """The org's rulesets by name (after ``after``, at most ``limit``): each one's latest version and how many
    versions it has."""
    counts = session.exec(select(StoredRuleset.name, func.count(), func.max(StoredRuleset.id))
                          .where(StoredRuleset.org_id == org_id, col(StoredRuleset.name) > after)
                          .group_by(col(StoredRuleset.name)).order_by(col(StoredRuleset.name)).limit(limit)).all()
    rows = {r.id: r for r in session.exec(select(StoredRuleset).where(
        col(StoredRuleset.id).in_([newest for _, _, newest in counts]))).all()}
    return [(rows[newest], n) for _, n, newest in counts]


def split_ref(ref: str) -> tuple[str, str | None]:
    """``name@version`` → ``(name, version)``; ``name`` → ``(name, None)``."""
    name, sep, version = ref.partition("@")
    return name, (version if sep else None)


class StoredRulesets:
    """The engine's ``RulesetResolver`` over one org's stored rulesets: ``name@version`` gives that version,
    ``name`` the latest; anything else raises ``UnresolvedRuleset``. Loaded rulesets are kept per instance."""

    def __init__(self, session: Session, org_id: int, registry: Registry, catalogue: FieldCatalogue):
        self.session = session
        self.org_id = org_id
        self.registry = registry
        self.catalogue = catalogue
        self._loaded: dict[tuple[str, str], Ruleset] = {}

    def row(self, ref: str) -> StoredRuleset:
        """The stored version ``ref`` names; ``UnresolvedRuleset`` when the org has none."""
        name, version = split_ref(ref)
        row = (get_version(self.session, self.org_id, name, version) if version
               else latest(self.session, self.org_id, name))
        if row is None:
            what = f"version {version} of ruleset {name!r}" if version else f"ruleset {name!r}"
            raise UnresolvedRuleset(f"no stored {what} in your org; upload it with POST /api/v1/rulesets")
        return row

    def __call__(self, ref: str, kind: str) -> Ruleset:
        """The compiled ruleset ``ref`` (for the message's ``rules.<kind>``)."""
        row = self.row(ref)
        key = (row.name, row.version)
        if key not in self._loaded:
            source = f"{row.name}@{row.version}"
            # a RuleFileError (the registry changed since the upload) reaches the message with its problems
            rs = load_ruleset_data(row.source, self.catalogue, kinds=self.registry.kinds, source=source,
                                   channels=_channels(self.registry))
            if rs.version != row.version:  # the engine's hashing changed since the upload
                raise UnresolvedRuleset(f"stored ruleset {source} now loads as version {rs.version}; upload it again",
                                        "ruleset_version_changed")
            self._loaded[key] = rs
        return self._loaded[key]
