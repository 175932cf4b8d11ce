"""Errors as RFC 9457 problem details (``application/problem+json``), with ``errors``: ``{path, code, message}``.

Raise :class:`Problem` (or one of its helpers) anywhere in a handler; the app turns it, Litestar's own
exceptions and validation failures into problem documents. A request that fails changes nothing: handlers
do their work in one transaction, rolled back by the exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An HTTP error the client can act on: ``status``, a short ``title``, a ``detail`` and field ``errors``."""

    def __init__(self, status: int, detail: str, errors: Sequence[Mapping[str, Any]] = (), *, title: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = [dict(e) for e in errors]
        self.title = title or HTTPStatus(status).phrase
        self.code = code
        self.headers = dict(headers or {})


def error(path: str, code: str, message: str) -> dict[str, str]:
    """One ``{path, code, message}`` item: ``path`` is a JSON pointer into the request (``/creatives/0/content``)
    or ``file:line:column`` for an upload."""
    return {"path": path, "code": code, "message": message}


def pointer(parts: Iterable[Any]) -> str:
    """A JSON pointer (RFC 6901) of path parts."""
    out = ""
    for p in parts:
        out += "/" + str(p).replace("~", "~0").replace("/", "~1")
    return out


def unprocessable(detail: str, errors: Sequence[Mapping[str, Any]]) -> Problem:
    """422: the request is well-formed but its content fails checks (every failure listed)."""
    return Problem(422, detail, errors)


def not_found(what: str) -> Problem:
    """404 for a resource that does not exist in the caller's org (another org's id looks the same)."""
    return Problem(404, f"no {what} with this id in your org", code="not_found")


def conflict(detail: str, code: str = "conflict") -> Problem:
    """409: the resource changed since the caller read it, or the action does not fit its state."""
    return Problem(409, detail, code=code)


def forbidden(detail: str) -> Problem:
    """403: the caller's roles do not allow this."""
    return Problem(403, detail, code="forbidden")


def problem_response(status: int, title: str, detail: str, errors: Sequence[Mapping[str, Any]] = (),
                     instance: str | None = None, code: str | None = None,
                     headers: Mapping[str, str] | None = None) -> Response[dict[str, Any]]:
    """A problem+json response."""
    body: dict[str, Any] = {"type": f"https://herald.dev/problems/{code or status}", "title": title,
                            "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = list(errors)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _validation_items(extra: Any) -> list[dict[str, str]]:
    items = []
    for item in extra if isinstance(extra, list) else []:
        message = str(item.get("message", "invalid")) if isinstance(item, Mapping) else str(item)
        key = item.get("key") if isinstance(item, Mapping) else None
        m = _AT.search(message)
        if m:
            message = message[: m.start()]
            parts = re.findall(r"\.([^.\[]+)|\[(\d+)\]", m.group("path"))
            path = pointer(a or b for a, b in parts)
        else:
            path = pointer([key]) if key else ""
        items.append(error(path, "invalid", message))
    return items


def handle_problem(request: Request, exc: Problem) -> Response[dict[str, Any]]:
    """Our own problems."""
    return problem_response(exc.status, exc.title, exc.detail, exc.errors, request.url.path, exc.code, exc.headers)


def handle_http(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    """Litestar's exceptions: validation failures become 422 with items; the rest keep their status."""
    if isinstance(exc, ValidationException):
        items = _validation_items(exc.extra)
        return problem_response(422, "Unprocessable Content", "the request does not match its schema", items,
                                request.url.path, "invalid")
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    if status == 413:
        detail = "the request body is larger than this server accepts (HERALD_MAX_BODY)"
    if status == 415:
        detail = detail or "unsupported media type"
    headers = exc.headers if isinstance(exc, HTTPException) and exc.headers else None
    return problem_response(status, HTTPStatus(status).phrase, str(detail), (), request.url.path, str(status), headers)
