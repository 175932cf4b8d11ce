"""Call tasks: what call-task channels "send" — a to-do per customer for the call centre. Agents list them,
claim one (nobody else may then work it) and complete it with an outcome and a note."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import get, post
from litestar.params import FromQuery, JSONBody, Parameter, QueryParameter

from service.http.auth import requires
from service.http.deps import MAX_ID, Caller, DbDep, IdPath, encode_cursor, id_cursor, page_limit
from service.http.problems import Problem, conflict, error, not_found, unprocessable
from service.storage import tasks

#: who works call tasks: marketers, admins and call-centre integrations (service keys)
AGENTS = requires("marketer", "admin", "service")


class CompleteIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How a call went: ``outcome`` (one of ``reached``, ``no_answer``, ``busy``, ``voicemail``, ``callback``,
    ``declined``, ``wrong_number``) and an optional ``note``."""

    outcome: Annotated[str, msgspec.Meta(max_length=50)]
    note: str | None = None


def _problem(exc: tasks.TaskStateError) -> Problem:
    if exc.code == "not_found":
        return not_found("task")
    return conflict(exc.detail, exc.code)


@get("/tasks", operation_id="listTasks", tags=["tasks"], guards=[AGENTS], sync_to_thread=True)
def list_tasks(caller: Caller, db: DbDep, status: FromQuery[str | None] = None,
               message_id: Annotated[int | None, QueryParameter(ge=1, le=MAX_ID)] = None,
               cursor: FromQuery[str | None] = None,
               limit: Annotated[int | None, Parameter(ge=1)] = None) -> dict[str, Any]:
    """The org's call tasks, oldest first, a page at a time; ``status`` (open, claimed, done) and
    ``message_id`` filter them."""
    if status is not None and status not in tasks.STATUSES:
        raise unprocessable("unknown task status", [error("status", "enum",
                                                          f"status is one of {', '.join(tasks.STATUSES)}")])
    size = page_limit(db.settings, limit)
    after = id_cursor(cursor)
    with db.tx() as s:
        rows = tasks.listing(s, caller.org_id, status=status, message_id=message_id, after=after, limit=size + 1)
    more = encode_cursor(rows[size - 1].id) if len(rows) > size else None
    return {"items": [tasks.task_out(r) for r in rows[:size]], "next_cursor": more}


@post("/tasks/{task_id:int}/claim", operation_id="claimTask", tags=["tasks"], guards=[AGENTS], status_code=200,
      sync_to_thread=True)
def claim_task(task_id: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """Claim an open task for yourself (claiming one you hold already is a no-op); 409 when someone else holds it
    or it is done."""
    try:
        with db.tx() as s:
            return tasks.task_out(tasks.claim(s, caller.org_id, task_id, caller.user_id))
    except tasks.TaskStateError as exc:
        raise _problem(exc) from None


@post("/tasks/{task_id:int}/complete", operation_id="completeTask", tags=["tasks"], guards=[AGENTS],
      status_code=200, sync_to_thread=True)
def complete_task(task_id: IdPath, data: JSONBody[CompleteIn], caller: Caller, db: DbDep) -> dict[str, Any]:
    """Record how the call went on a task you claimed: ``reached`` marks its delivery delivered,
    ``wrong_number`` marks the customer's number invalid for the channel. 422 for an unknown outcome or a note
    too long; 409 when you do not hold the task (or it is done with another outcome)."""
    problems = []
    if data.outcome not in tasks.OUTCOMES:
        problems.append(error("/outcome", "enum", f"outcome is one of {', '.join(tasks.OUTCOMES)}"))
    if data.note is not None and len(data.note) > tasks.MAX_NOTE:
        problems.append(error("/note", "too_long", f"the note has more than {tasks.MAX_NOTE} characters"))
    if problems:
        raise unprocessable("the outcome is not one a task can have", problems)
    try:
        with db.tx() as s:
            return tasks.task_out(tasks.complete(s, caller.org_id, task_id, caller.user_id, data.outcome, data.note))
    except tasks.TaskStateError as exc:
        raise _problem(exc) from None


HANDLERS = [list_tasks, claim_task, complete_task]
