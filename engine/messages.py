"""Message files (YAML): the six steps of a message as data, loaded into :class:`engine.model.Message`.

Loading checks the file's shape (with line and column), loads the rulesets it names (paths relative to
the message file, confined to its folder or to ``HERALD_RULES_ROOT``: see :func:`rule_file_path`), and asks the registered channels and incentive types to validate creatives and the
incentive. Every problem is reported at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from engine.errors import MessageFileError, Problem, RuleFileError, ValidationFailed
from engine.fields import FieldCatalogue
from engine.model import Campaign, Creative, DeliverySettings, IncentiveSpec, Message, Schedule
from engine.plain import plain_message
from engine.plugin_needs import left_out_problems, rule_channel_problems
from engine.registry import Registry, unknown_kind
from engine.rulefiles.ir import Ruleset
from engine.rulefiles.loader import load_ruleset
from engine.sourcefile import SourceData, check_depth, parse_text, read_source
from engine.validation import strategies, validate_message


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CampaignModel(_Strict):
    """The campaign: its dates bound schedules and coupon validity."""

    id: str = Field(min_length=1)
    name: str = ""
    starts: dt.date | None = None
    ends: dt.date | None = None
    objective: str | None = None

    @field_validator("ends")
    @classmethod
    def _ends_after_start(cls, ends: dt.date | None, info: ValidationInfo) -> dt.date | None:
        starts = info.data.get("starts")
        if ends is not None and starts is not None and ends < starts:
            raise ValueError(f"the campaign ends ({ends}) before it starts ({starts})")
        return ends


class MessageHead(_Strict):
    """Step 1: title, type and optimization strategy."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str = Field(min_length=1, max_length=200)
    type: Literal["broadcast", "bounceback", "timeline"] = "broadcast"
    campaign: CampaignModel
    strategy: list[str] = Field(default_factory=list, description="rule kinds registered as strategies, or x_engage")


class CreativeModel(_Strict):
    """Step 3: one channel's content for one variant."""

    channel: str
    variant: str = "default"
    content: dict[str, Any]


class IncentiveModel(_Strict):
    """Step 4: a registered incentive kind and its settings."""

    kind: str
    settings: dict[str, Any] = Field(default_factory=dict)


class ScheduleModel(_Strict):
    """Step 5: when; every time carries a time zone."""

    kind: Literal["immediate", "at", "recurring"] = "immediate"
    at: dt.datetime | None = None
    rrule: str | None = None
    local_time: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_hours: tuple[str, str] | None = None


class DeliveryModel(_Strict):
    """Delivery settings."""

    send_to_dnd: bool = False
    send_to_control: bool = False
    tiny_url: bool = False
    senders: dict[str, dict[str, Any]] = Field(default_factory=dict)


class MessageFile(_Strict):
    """A message file."""

    message: MessageHead
    rules: dict[str, str] = Field(default_factory=dict, description="rule kind → rule file (relative path)")
    channels: list[str] = Field(default_factory=list)
    creatives: list[CreativeModel] = Field(min_length=1)
    incentive: IncentiveModel | None = None
    schedule: ScheduleModel = Field(default_factory=ScheduleModel)
    delivery: DeliveryModel = Field(default_factory=DeliveryModel)
    optimizers: dict[str, dict[str, Any]] = Field(default_factory=dict)


class UnresolvedRuleset(LookupError):
    """A resolver cannot give the ruleset a message names; the text says why (shown at the message's
    ``rules.<kind>``), ``code`` is the problem's code."""

    def __init__(self, message: str, code: str = "unresolved_ruleset"):
        super().__init__(message)
        self.code = code


class RulesetResolver(Protocol):
    """Gives the ruleset a message names under ``rules:`` (``ref``: what the message wrote, ``kind``: the key).

    Raise :class:`UnresolvedRuleset` when ``ref`` names nothing this resolver may give (reported at the
    message's ``rules.<kind>``), or ``RuleFileError`` when the ruleset itself is broken (its own problems).
    The file loader (:class:`FileRulesetResolver`) is one resolver; a database of stored rulesets is another.
    """

    def __call__(self, ref: str, kind: str) -> Ruleset: ...


@dataclasses.dataclass(frozen=True)
class FileRulesetResolver:
    """Rule files relative to a message's folder, confined to it or to ``HERALD_RULES_ROOT``
    (:func:`rule_file_path`), loaded against the registry's kinds and channels and the field catalogue."""

    base: Path
    registry: Registry
    catalogue: FieldCatalogue

    def __call__(self, ref: str, kind: str) -> Ruleset:
        path = rule_file_path(self.base, ref)
        if isinstance(path, str):
            raise UnresolvedRuleset(path, "path_outside_root")
        registry = self.registry
        # channels of plugins the allow/deny lists leave out load too, so that the message names the plugin
        channels = set(registry.channels) | (registry.left_out_names("channel") if registry.left_out else set())
        return load_ruleset(path, self.catalogue, kinds=registry.kinds, channels=channels)


def load_message(path: str | Path, registry: Registry, catalogue: FieldCatalogue) -> Message:
    """Load and validate a message file; ``MessageFileError`` lists every problem with its place. Rule files
    are read relative to the message's folder (:class:`FileRulesetResolver`)."""
    try:
        src = read_source(path)
    except MessageFileError:
        raise
    except ValidationFailed as exc:
        raise MessageFileError(exc.problems, str(exc).split("\n", 1)[0]) from None
    resolver = FileRulesetResolver(Path(src.file).parent, registry, catalogue)
    return _load(src, registry, catalogue, resolver)


def load_message_data(data: Mapping[str, Any] | str, registry: Registry, catalogue: FieldCatalogue, *,
                      resolver: RulesetResolver, source: str = "<api>") -> Message:
    """Like :func:`load_message` for a message held as data (a mapping, or YAML/JSON text with positions),
    its rulesets given by ``resolver`` (e.g. rulesets stored in a database); ``source`` names it in errors."""
    try:
        if isinstance(data, str):
            src = parse_text(data, source)
        else:
            check_depth(data, source)
            src = SourceData(data, source)
    except ValidationFailed as exc:
        raise MessageFileError(exc.problems, str(exc).split("\n", 1)[0]) from None
    return _load(src, registry, catalogue, resolver)


def _load(src: SourceData, registry: Registry, catalogue: FieldCatalogue, resolver: RulesetResolver) -> Message:
    if not isinstance(src.data, dict):
        raise MessageFileError([src.problem("a message file is a mapping (message, creatives, …)", code="shape")])
    if "ruleset" in src.data and "message" not in src.data:
        raise MessageFileError([src.problem("this is a rule file (it has 'ruleset:'), not a message file; name it "
                                            "under the message's rules:, or check it with herald rules check",
                                            code="shape")], f"{src.file}: not a message file")
    try:
        model = MessageFile.model_validate(src.data)
    except ValidationError as exc:
        raise MessageFileError([_problem(src, e) for e in exc.errors()], f"{src.file}: invalid message file") from None

    problems = vocabulary_problems(src, model, registry)
    left_out = left_out_problems(src, registry)  # a name only a plugin left out by the lists registers
    rulesets = {}
    for kind, ref in model.rules.items():
        if kind not in registry.kinds:
            continue  # reported above
        try:
            rs = resolver(ref, kind)
        except UnresolvedRuleset as exc:
            problems.append(src.problem(str(exc), ("rules", kind), exc.code))
            continue
        except RuleFileError as exc:
            problems.extend(exc.problems)
            continue
        left_out += rule_channel_problems(src, kind, ref, rs, registry)
        if rs.kind != kind:
            problems.append(src.problem(f"{ref} holds a {rs.kind} ruleset, not {kind}", ("rules", kind), "kind"))
        rulesets[kind] = rs
    if left_out:
        raise MessageFileError(left_out, f"{src.file}: needs a plugin that HERALD_PLUGINS or HERALD_DISABLE_PLUGINS "
                                         "leaves out")
    if problems:
        raise MessageFileError(problems, f"{src.file}: its rule files have problems")

    message = to_message(model, rulesets, source=src.file)
    issues = validate_message(message, registry, catalogue)
    errors = [i for i in issues if i.is_error]
    if errors:
        raise MessageFileError([src.problem(i.message, _issue_loc(i.path), i.code, i.path) for i in errors],
                               f"{src.file}: {len(errors)} problem(s)")
    warnings = tuple(i for i in issues if not i.is_error)
    return dataclasses.replace(message, warnings=warnings) if warnings else message


def rule_file_path(base: Path, rel: str) -> Path | str:
    """The rule file ``rel`` named by a message in folder ``base``, or why it is refused (text).

    A rule file must lie inside the rules root: ``HERALD_RULES_ROOT`` when set, else the message's own folder
    (symbolic links are followed first, so a link cannot lead outside). ``..`` and absolute paths that
    leave it are refused: a message file cannot make Herald read an arbitrary file.
    """
    configured = os.environ.get("HERALD_RULES_ROOT", "").strip()
    root = Path(configured).resolve() if configured else base.resolve()
    target = (base / rel).resolve()
    if target == root or root not in target.parents:
        where = f"the rules root {root} (HERALD_RULES_ROOT)" if configured else f"the message's folder {root}"
        hint = "" if configured else "; set HERALD_RULES_ROOT to allow a shared rules folder"
        return f"rule file {rel!r} is outside {where}{hint}"
    return base / rel
def vocabulary_problems(src: SourceData, model: MessageFile, registry: Registry) -> list[Problem]:
    """The ``rules:`` keys and ``message.strategy`` names that no registered rule kind gives."""
    out = [src.problem(unknown_kind(kind, registry.kinds), ("rules", kind), "unknown_kind", f"rules.{kind}")
           for kind in model.rules if kind not in registry.kinds]
    allowed = strategies(registry)
    for i, name in enumerate(model.message.strategy):
        if name not in allowed:
            out.append(src.problem(f"unknown strategy {name!r}; one of {', '.join(allowed)}",
                                   ("message", "strategy", i), "unknown_strategy", f"message.strategy[{i}]"))
    return out


def to_message(model: MessageFile, rulesets: Mapping[str, Any], *, source: str | None = None) -> Message:
    """Turn a validated message file model into the engine's Message."""
    head = model.message
    s = model.schedule
    return Message(
        id=head.id,
        title=head.title,
        campaign=Campaign(head.campaign.id, head.campaign.name, head.campaign.starts, head.campaign.ends,
                          head.campaign.objective),
        type=head.type,
        strategy=tuple(head.strategy),
        rulesets=dict(rulesets),
        channels=tuple(model.channels),
        creatives=tuple(Creative(c.channel, c.variant, c.content) for c in model.creatives),
        incentive=IncentiveSpec(model.incentive.kind, model.incentive.settings) if model.incentive else None,
        schedule=Schedule(s.kind, s.at, s.rrule, s.local_time, (s.quiet_hours[0], s.quiet_hours[1]) if s.quiet_hours else None),
        delivery=DeliverySettings(model.delivery.send_to_dnd, model.delivery.send_to_control, model.delivery.tiny_url,
                                  model.delivery.senders),
        optimizers=model.optimizers,
        source=source,
    )


def _issue_loc(path: str) -> list[Any]:
    out: list[Any] = []
    for part in path.replace("]", "").replace("[", ".").split("."):
        if part:
            out.append(int(part) if part.isdigit() else part)
    return out


def _problem(src: SourceData, err: Mapping[str, Any]) -> Problem:
    loc = list(err["loc"])
    msg = plain_message(err) or err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "field required"
    elif err["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    from engine.sourcefile import dotted

    return src.problem(msg, loc, err["type"], dotted(loc))
