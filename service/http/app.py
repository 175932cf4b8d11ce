"""The app factory: ``create_app(settings, herald)`` builds the Litestar app over one database."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from sqlalchemy import Engine

from engine.runtime import Herald
from service.http.auth import PUBLIC, KeyAuth
from service.http.deps import Db, provide_caller, provide_db
from service.http.idempotency import Idempotency
from service.http.problems import Problem, handle_http, handle_problem, problem_response
from service.http.routes import api_router
from service.settings import Settings
from service.storage.db import NotMigrated, check_migrated, make_engine
from service.storage.sealing import sealer_for


@get("/health", operation_id="health", tags=["ops"], sync_to_thread=False)
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/ready", operation_id="ready", tags=["ops"], sync_to_thread=True)
def ready(state: State) -> Response[dict[str, Any]]:
    """The database is reachable and at the code's migration; 503 (saying what to do) otherwise."""
    db: Db = state.db
    try:
        check_migrated(db.engine, db.settings.database_url)
    except NotMigrated as exc:
        return problem_response(503, "Service Unavailable", str(exc), code="not_migrated")
    except Exception as exc:  # the database is down or unreachable
        return problem_response(503, "Service Unavailable", f"the database is unreachable ({type(exc).__name__})",
                                code="database_unreachable")
    return Response({"status": "ready"})


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    request.logger.exception("unhandled error")
    return problem_response(500, "Internal Server Error", "the server failed; nothing was changed",
                            instance=request.url.path, code="internal")


def create_app(settings: Settings, herald: Herald, *, engine: Engine | None = None, check: bool = True) -> Litestar:
    """The HTTP app over ``settings.database_url`` (or ``engine``), evaluating with ``herald``.

    Refuses to start (:class:`NotMigrated`, naming ``herald migrate``) on a database that is not at the code's
    migration, unless ``check`` is off.
    """
    engine = engine or make_engine(settings.database_url)
    if check:
        check_migrated(engine, settings.database_url)
    db = Db(engine, herald, settings, sealer_for(settings.database_url, settings.secret_keys))
    openapi = OpenAPIConfig(
        title="Herald", version="1", path="/schema",
        components=Components(security_schemes={"apiKey": SecurityScheme(type="http", scheme="bearer",
                                                                           description="an org's API key: hk_…")}),
        security=[{"apiKey": []}],
    )
    return Litestar(
        route_handlers=[health, ready, api_router],
        state=State({"db": db}),
        dependencies={"db": Provide(provide_db, sync_to_thread=False),
                      "caller": Provide(provide_caller, sync_to_thread=False)},
        middleware=[DefineMiddleware(KeyAuth, exclude=[f"^{p}" for p in PUBLIC]), DefineMiddleware(Idempotency)],
        exception_handlers={Problem: handle_problem, HTTPException: handle_http, Exception: _internal},
        openapi_config=openapi,
        request_max_body_size=settings.max_body,
        debug=False,
    )
