"""Worker processes for the scale-out tests: ``herald worker`` started as real processes on the test database,
killed with SIGKILL and restarted under the same name."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


class Workers:
    """Up to a few ``herald worker`` processes sharing one database; their output goes to files in ``logs``."""

    def __init__(self, database_url: str, logs: Path, **env: str):
        self.env = {**os.environ, "HERALD_DATABASE_URL": database_url, "HERALD_FIELDS": str(ROOT / "rules" / "fields.yaml"),
                    "HERALD_SCHEDULER_POLL": "0.2", "PYTHONPATH": str(ROOT), **env}
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[Any]] = {}

    def start(self, name: str) -> None:
        """Start ``herald worker --id name``."""
        out = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "service.cli", "worker", "--id", name],
                                            env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up at all, as a machine that dies."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def alive(self) -> list[str]:
        """Names of the workers still running (a worker that died says why in its log)."""
        dead = [n for n, p in self.procs.items() if p.poll() is not None]
        for name in dead:
            raise AssertionError(f"worker {name} exited with {self.procs[name].returncode}:\n"
                                 + (self.logs / f"{name}.log").read_text(errors="replace")[-3000:])
        return list(self.procs)

    def stop_all(self) -> None:
        """SIGTERM every worker and wait for it."""
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


@contextmanager
def worker_pool(database_url: str, logs: Path, admin_url: str, **env: str) -> Iterator[Workers]:
    """:class:`Workers` with a DBOS schema of their own in the PostgreSQL of ``admin_url``: on leaving, every
    worker is stopped and the schema dropped."""
    from sqlalchemy import text

    from service.storage.db import make_engine

    schema = f"dbos_procs_{secrets.token_hex(4)}"
    pool = Workers(database_url, logs, HERALD_DBOS_SCHEMA=schema, **env)
    try:
        yield pool
    finally:
        pool.stop_all()
        admin = make_engine(admin_url)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def wait_until(check: Any, timeout: float, what: str, every: float = 0.25) -> Any:
    """Poll ``check()`` until it returns something truthy; ``AssertionError`` naming ``what`` at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
