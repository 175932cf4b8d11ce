"""Ad audience exports: the files of hashed identifiers a send run on ad channels wrote, one per channel."""

from __future__ import annotations

from typing import Any

from litestar import get

from service.http.auth import READERS
from service.http.deps import Caller, DbDep, IdPath, owned
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


HANDLERS = [run_exports]
