"""The README's curl walk-through, run verbatim against a real server: ``herald demo --serve`` on loopback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = re.compile(r"^\s+(admin|marketer|approver)\s+(hk_\S+)$", re.M)


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- walkthrough -->", 1)[1].split("<!-- /walkthrough -->", 1)[0]
    return block.split("```sh\n", 1)[1].rsplit("```", 1)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not all(map(lambda c: subprocess.run(["which", c], capture_output=True).returncode == 0,
                                ["curl", "bash"])), reason="needs curl and bash")
def test_the_readme_walkthrough_runs_verbatim_against_a_served_demo(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HERALD_FIELDS", None)
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "demo", "--serve", "--port", str(port),
                               "--database", f"sqlite:///{tmp_path / 'herald.db'}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        out = ""
        assert server.stdout is not None
        deadline = time.monotonic() + 60
        while "Herald on" not in out and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            out += line
        keys = dict(KEY.findall(out))
        assert set(keys) == {"admin", "marketer", "approver"}, out
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        script = "set -euo pipefail\n" + walkthrough()
        script = script.replace("export HERALD=http://127.0.0.1:8000", f"export HERALD=http://127.0.0.1:{port}")
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={**env, "MARKETER": keys["marketer"], "APPROVER": keys["approver"]})
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.strip().splitlines()
        assert lines[-5:] == ["approved", "sent", "True", "Hi ", "sent"], lines
        assert lines[0] == "2"  # the two customers the walk-through uploads are new
        summary = lines[-6]
        assert summary.startswith("{'total': ") and "'included': " in summary and "'channels': {'sms': " in summary
    finally:
        server.terminate()
        server.wait(timeout=10)
