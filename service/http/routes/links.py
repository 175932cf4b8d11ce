"""``GET /t/{code}``: a tracked tiny link — a 302 to the URL stored for the code (and one more click
counted), or 404. Public (the recipient has no API key) and outside ``/api/v1``.

Never an open redirect: the only input is the code; the target is whatever the shortener stored for it, a
link of an approved message's rendered content, and is re-checked to be an http(s) URL before it is answered.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.params import FromPath
from litestar.response import Redirect

from service.http.deps import DbDep
from service.http.problems import Problem
from service.storage.links import click


@get("/t/{code:str}", operation_id="followTinyLink", tags=["links"], sync_to_thread=True, security=[],
     include_in_schema=True)
def follow(code: FromPath[str], db: DbDep) -> Response[Any]:
    """Redirect (302) to the link this code stands for, counting the click; 404 for an unknown code."""
    with db.tx() as s:
        url = click(s, code)
    if url is None:
        raise Problem(404, "no link has this code", code="not_found")
    return Redirect(url, status_code=302, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


#: handlers under /api/v1 (none) and public handlers at the root
HANDLERS: list[Any] = []
PUBLIC_HANDLERS = [follow]
