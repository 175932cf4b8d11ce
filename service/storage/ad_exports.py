"""Ad audience export files: one row of hashed identifiers per delivery on an ad channel (stored once per
delivery key and channel), and the CSV files written from them — ``<export dir>/<org>/<message>/<run>/
<channel>.csv`` — with what lists them.

Why rows in a table and the file written when the run finishes (rather than appending to the file as each
delivery goes): the database's unique (key, channel) is what makes "never twice per key" hold across processes
and hosts, and across a crash between a file append and the delivery's record (a retried send would append
again; a file lock does neither across hosts nor across that crash). The file is then a pure function of the
rows: it is written whole to a temporary file and renamed into place, so a reader never sees half a file and
two writers (a retried step) write the same bytes.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from service.storage.db import transaction
from service.storage.tables import AdExportRow, Delivery

#: what a channel's file may be named after (registered channel names are like this)
_CHANNEL = re.compile(r"[a-z][a-z0-9_]{0,49}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: the header of each platform's file (Meta customer lists, Google Customer Match)
HEADERS = {"meta": ("email", "phone"), "google": ("Email", "Phone")}
#: rows read from the database at a time while writing a file
FETCH = 5000


class ExportPathError(ValueError):
    """A name that would put an export file outside the export directory."""


def run_dir(export_dir: Path, org_id: int, message_id: int, run_id: int) -> Path:
    """The directory of one run's export files (ids only: nothing a user typed reaches the path)."""
    for n in (org_id, message_id, run_id):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ExportPathError(f"not an id: {n!r}")
    base = export_dir.resolve()
    path = (base / str(org_id) / str(message_id) / str(run_id)).resolve()
    if not path.is_relative_to(base):
        raise ExportPathError(f"{path} is outside {base}")
    return path


def file_path(export_dir: Path, org_id: int, message_id: int, run_id: int, channel: str) -> Path:
    """The export file of one channel of one run, confined under ``export_dir``."""
    if not _CHANNEL.fullmatch(channel):
        raise ExportPathError(f"not a channel name: {channel!r}")
    return run_dir(export_dir, org_id, message_id, run_id) / f"{channel}.csv"


def _hash(value: Any) -> str | None:
    return value if isinstance(value, str) and _HEX64.fullmatch(value) else None


def record_once(engine: Engine, key: str, channel: str,
                identifiers: Callable[[Delivery], Mapping[str, Any]]) -> bool | None:
    """Store the hashed ``email`` and ``phone`` that ``identifiers`` finds for the delivery ``key`` on ``channel``
    (values that are not SHA-256 hex are dropped). True when written now, False when already there (a retried
    send), None when no delivery has that key or no identifier is left."""
    for _ in range(2):
        try:
            with transaction(engine) as s:
                if s.exec(select(AdExportRow.id).where(AdExportRow.key == key, AdExportRow.channel == channel)).first():
                    return False
                d = s.exec(select(Delivery).where(Delivery.key == key)).first()
                if d is None:
                    return None
                ids = identifiers(d)
                email, phone = _hash(ids.get("email")), _hash(ids.get("phone"))
                if email is None and phone is None:
                    return None
                s.add(AdExportRow(org_id=d.org_id, key=key, channel=channel, message_id=d.message_id, run_id=d.run_id,
                                  email=email, phone=phone))
                s.flush()
                return True
        except IntegrityError:  # another worker stored the same key in between: its row stands
            continue
    return False


def run_channels(engine: Engine, run_id: int) -> list[tuple[int, int, str]]:
    """(org, message, channel) of every channel with export rows in the run."""
    with transaction(engine) as s:
        rows = s.execute(sa_select(col(AdExportRow.org_id), col(AdExportRow.message_id), col(AdExportRow.channel))
                         .where(col(AdExportRow.run_id) == run_id).distinct()).all()
    return sorted((int(o), int(m), str(c)) for o, m, c in rows)


def _rows(engine: Engine, run_id: int, channel: str) -> Iterator[tuple[str | None, str | None]]:
    """The run's distinct (email, phone) pairs on ``channel``, in the order they were first recorded."""
    first = func.min(AdExportRow.id)
    stmt = (sa_select(col(AdExportRow.email), col(AdExportRow.phone), first)
            .where(col(AdExportRow.run_id) == run_id, col(AdExportRow.channel) == channel)
            .group_by(col(AdExportRow.email), col(AdExportRow.phone)).order_by(first))
    with engine.connect() as conn:
        for email, phone, _ in conn.execution_options(yield_per=FETCH).execute(stmt):
            yield email, phone


def write_file(engine: Engine, export_dir: Path, run_id: int, org_id: int, message_id: int, channel: str,
               platform: str | None) -> Path:
    """Write the run's file of ``channel`` whole (a temporary file renamed into place); its path."""
    path = file_path(export_dir, org_id, message_id, run_id, channel)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{channel}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(HEADERS.get(platform or "", ("email", "phone")))
            for email, phone in _rows(engine, run_id, channel):
                out.writerow((email or "", phone or ""))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def count_rows(path: Path) -> int:
    """Data rows of an export file (lines after the header), read in blocks."""
    lines = 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            lines += block.count(b"\n")
    return max(0, lines - 1)


def written_file(export_dir: Path, org_id: int, message_id: int, run_id: int, name: str) -> Path | None:
    """The run's export file called ``name`` (``<channel>.csv``) when the run wrote it, else ``None`` (a name
    that is no channel's file never reaches the file system)."""
    channel = name.removesuffix(".csv")
    if not name.endswith(".csv") or not _CHANNEL.fullmatch(channel):
        return None
    path = file_path(export_dir, org_id, message_id, run_id, channel)
    return path if path.is_file() and not path.is_symlink() else None


def list_files(export_dir: Path, org_id: int, message_id: int, run_id: int) -> list[dict[str, Any]]:
    """The run's export files: name, channel, data rows and bytes (none before the run has written them)."""
    where = run_dir(export_dir, org_id, message_id, run_id)
    if not where.is_dir():
        return []
    out = []
    for p in sorted(where.iterdir()):
        if p.suffix != ".csv" or not _CHANNEL.fullmatch(p.stem) or not p.is_file() or p.is_symlink():
            continue
        out.append({"name": p.name, "channel": p.stem, "rows": count_rows(p), "bytes": p.stat().st_size})
    return out

