"""The few exceptions the engine raises. Every one carries enough to point a user at the place to fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (file, line, column, path), a machine code, and what to fix."""

    message: str
    code: str = "invalid"
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str = ""

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.path:
            where = f"{where}: {self.path}" if where else self.path
        return f"{where}: {self.message}" if where else self.message


class ValidationFailed(EngineError):
    """Input was rejected; ``problems`` lists every place at fault (never just the first)."""

    def __init__(self, problems: Sequence[Problem], summary: str | None = None):
        self.problems = tuple(problems)
        #: the first line of the message (the problems follow, one a line)
        self.summary = summary or f"{len(self.problems)} problem(s)"
        super().__init__(self.summary + "\n" + "\n".join(f"  {p}" for p in self.problems))


class RuleFileError(ValidationFailed):
    """A rule file is malformed, references unknown fields, or has rules that can never fire."""


class AudienceError(ValidationFailed):
    """An audience file has rows that cannot be read (bad CSV, wrong types, missing id)."""


class MessageFileError(ValidationFailed):
    """A message file is malformed or refers to unknown channels, variants, incentives or rules."""


class PluginConflict(EngineError):
    """Two plugins registered the same name, or a plugin registered something malformed."""


class PluginSettingsError(EngineError):
    """A plugin refused its settings block (``HERALD_SETTINGS``): the message names the plugin and the setting."""


class UnknownReference(EngineError):
    """A name (channel, incentive type, optimizer, evaluator) that nothing registered."""


class ModeError(EngineError):
    """An execution mode that cannot serve the options asked for (``Herald.evaluate``); the message says why."""


class EvaluationError(EngineError):
    """Evaluating rules failed at run time (for example an action error surfaced from durable-rules)."""

    def __init__(self, message: str, *, ruleset: str | None = None, rule: str | None = None):
        self.ruleset = ruleset
        self.rule = rule
        super().__init__(message)


class TemplateError(EngineError):
    """A Liquid template failed to parse or to render (strict: an undefined variable is an error)."""
