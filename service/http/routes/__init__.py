"""The ``/api/v1`` routes, one module per resource of the six-step flow."""

from __future__ import annotations

from litestar import Router

from service.http.routes import campaigns, evaluation, org

#: every module's handlers; each module lists its own in ``HANDLERS``
MODULES = (org, campaigns, evaluation)

api_router = Router(path="/api/v1", route_handlers=[h for m in MODULES for h in m.HANDLERS])
