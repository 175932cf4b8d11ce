"""The ``/api/v1`` routes, one module per resource of the six-step flow."""

from __future__ import annotations

from litestar import Router

from service.http.routes import (
    audiences,
    campaigns,
    creatives,
    customers,
    evaluation,
    incentives,
    messages,
    org,
    reports,
    rulesets,
    workflow,
)

#: every module's handlers; each module lists its own in ``HANDLERS``
MODULES = (org, campaigns, customers, audiences, messages, creatives, incentives, rulesets, workflow, evaluation,
           reports)

api_router = Router(path="/api/v1", route_handlers=[h for m in MODULES for h in m.HANDLERS])
