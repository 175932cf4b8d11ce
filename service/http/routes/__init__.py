"""The ``/api/v1`` routes, one module per resource of the six-step flow, and the few public routes at the root
(``/t/{code}`` tiny links, ``/u`` unsubscribes) that recipients follow from the messages they got."""

from __future__ import annotations

from litestar import Router

from service.http.routes import (
    audiences,
    campaigns,
    creatives,
    customers,
    evaluation,
    exports,
    incentives,
    links,
    messages,
    org,
    reports,
    rulesets,
    send_test,
    subscriptions,
    tasks,
    webhooks,
    workflow,
)

#: every module's handlers; each module lists its own in ``HANDLERS``
MODULES = (org, campaigns, customers, audiences, messages, creatives, incentives, rulesets, workflow, evaluation,
           reports, send_test, links, webhooks, subscriptions, tasks, exports)

#: the API under /api/v1, and beside it the public routes at the root (``PUBLIC_HANDLERS`` of a module)
api_router = Router(path="/", route_handlers=[
    Router(path="/api/v1", route_handlers=[h for m in MODULES for h in m.HANDLERS]),
    *[h for m in MODULES for h in getattr(m, "PUBLIC_HANDLERS", ())],
])
