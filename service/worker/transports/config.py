"""Reading a transport's settings: typed options with the path of each field in every error, secrets that
never show in a ``repr`` or a message, and ``$env:NAME`` values read from the environment."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

_MISSING: Any = object()


class TransportConfigError(ValueError):
    """A transport's settings cannot be used: ``path`` names the field (``transports.sms.account_sid``),
    ``message`` says what is wrong (never quoting a secret)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class Secret:
    """A credential (token, password, private key): ``reveal()`` gives it; ``repr`` and ``str`` never do."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact(text: str, secrets: Iterable[str | Secret | None]) -> str:
    """``text`` with every occurrence of the given secrets (4+ characters) replaced by ``***``."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


class Options:
    """Typed reads of one transport's settings mapping; every error names ``<prefix>.<key>``.

    Call :meth:`done` after the reads: an option nobody read is an error (a typo must not pass silently).
    A text value ``$env:NAME`` is replaced by the environment variable ``NAME`` (an error when unset).
    """

    def __init__(self, config: Mapping[str, Any], prefix: str, *, env: Mapping[str, str] | None = None):
        if not isinstance(config, Mapping):
            raise TransportConfigError(prefix, f"must be a mapping of options, not {type(config).__name__}")
        self.config = config
        self.prefix = prefix
        self.env = os.environ if env is None else env
        self.read: set[str] = {"kind"}

    def path(self, key: str) -> str:
        """The dotted path of option ``key``."""
        return f"{self.prefix}.{key}"

    def error(self, key: str, message: str) -> TransportConfigError:
        """A configuration error for option ``key``."""
        return TransportConfigError(self.path(key), message)

    def raw(self, key: str, default: Any = _MISSING, *, secret: bool = False) -> Any:
        """The value of ``key`` (``$env:`` resolved), ``default`` when absent or null; required without one."""
        self.read.add(key)
        value = self.config.get(key)
        if isinstance(value, str) and value.startswith("$env:"):
            var = value[5:]
            if var not in self.env:
                raise self.error(key, f"environment variable {var} is not set")
            value = self.env[var]
        if value is None or (isinstance(value, str) and not value.strip() and not secret):
            if default is _MISSING:
                raise self.error(key, "required")
            return default
        return value

    def text(self, key: str, default: Any = _MISSING, *, max_length: int = 2048) -> Any:
        """A non-empty single-line text (``default`` when absent)."""
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"must be a text, not {type(value).__name__}")
        if "\n" in value or "\r" in value or len(value) > max_length:
            raise self.error(key, f"must be one line of at most {max_length} characters")
        return value.strip()

    def secret(self, key: str, default: Any = _MISSING, *, multiline: bool = False) -> Any:
        """A credential, wrapped in :class:`Secret`; errors describe it without quoting it."""
        value = self.raw(key, default, secret=True)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or not value.strip():
            kind = "an empty text" if isinstance(value, str) else type(value).__name__
            raise self.error(key, f"must be a non-empty text, not {kind}")
        if not multiline and ("\n" in value or "\r" in value):
            raise self.error(key, "must be a single line (the value is not shown)")
        return Secret(value.strip() if not multiline else value)

    def number(self, key: str, default: float, *, minimum: float, maximum: float) -> float:
        """A number in [minimum, maximum]."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number, not {type(value).__name__}")
        if not minimum <= value <= maximum:
            raise self.error(key, f"must be between {minimum:g} and {maximum:g}, not {value:g}")
        return float(value)

    def whole(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        """A whole number in [minimum, maximum]."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be a whole number, not {type(value).__name__}")
        if not minimum <= value <= maximum:
            raise self.error(key, f"must be between {minimum} and {maximum}, not {value}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        """A boolean."""
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {type(value).__name__}")
        return value

    def url(self, key: str, default: Any = _MISSING) -> Any:
        """An http(s) URL without query or fragment, trailing slash removed."""
        value = self.text(key, default)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise self.error(key, f"must be an http(s) URL without query or fragment, not {value!r}")
        return value.rstrip("/")

    def mapping(self, key: str, default: Any = _MISSING) -> Any:
        """A mapping."""
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a mapping, not {type(value).__name__}")
        return value

    def done(self) -> None:
        """Refuse options that were never read (typos, options of another kind)."""
        unknown = sorted(str(k) for k in self.config if k not in self.read)
        if unknown:
            known = ", ".join(sorted(self.read - {"kind"}))
            raise self.error(unknown[0], f"unknown option (this kind knows: {known})")
