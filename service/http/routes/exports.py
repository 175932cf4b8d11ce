"""Ad audience exports: the files of hashed identifiers a send run on ad channels wrote, one per channel."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.params import FromPath
from litestar.response import File

from service.http.auth import READERS
from service.http.deps import Caller, DbDep, IdPath, owned
from service.http.problems import Problem
from service.storage import ad_exports
from service.storage.tables import Run


@get("/runs/{run_id:int}/exports", operation_id="runExports", tags=["delivery"], guards=[READERS],
     sync_to_thread=True)
def run_exports(run_id: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """The run's export files (written when the run finishes): name, channel, data rows and bytes."""
    with db.tx() as s:
        run = owned(s, Run, run_id, caller, "run")
        message_id = run.message_id
    assert run.id is not None
    files = ad_exports.list_files(db.settings.export_dir, caller.org_id, message_id, run.id)
    return {"run_id": run.id, "items": files}


@get("/runs/{run_id:int}/exports/{name:str}", operation_id="runExportFile", tags=["delivery"], guards=[READERS],
     sync_to_thread=True, media_type="text/csv")
def run_export_file(run_id: IdPath, name: FromPath[str], caller: Caller, db: DbDep) -> File:
    """One export file of the run (as listed by ``runExports``: ``<channel>.csv``), for the ad platform's
    upload; 404 for a name the run has not written."""
    with db.tx() as s:
        run = owned(s, Run, run_id, caller, "run")
        message_id = run.message_id
    assert run.id is not None
    path = ad_exports.written_file(db.settings.export_dir, caller.org_id, message_id, run.id, name)
    if path is None:
        raise Problem(404, f"run {run.id} has no export file {name[:100]!r}", code="not_found")
    return File(path, filename=f"run-{run.id}-{name}", media_type="text/csv; charset=utf-8")


HANDLERS = [run_exports, run_export_file]
