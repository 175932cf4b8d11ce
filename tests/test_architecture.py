"""Boundaries, checked: import-linter contracts, plus direct scans of what plugins and the engine import."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is not installed"
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 9 kept, 0 broken." in result.stdout


def test_plugins_import_only_the_engines_public_api():
    offenders = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for name in imports(path):
            if name.startswith("engine.") or name.startswith(("service", "durable")):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_only_the_durable_evaluator_imports_durable():
    users = [p.relative_to(ROOT).as_posix() for folder in ("engine", "plugins", "service")
             for p in (ROOT / folder).rglob("*.py")
             if any(n == "durable" or n.startswith("durable.") or n == "durable_rules_engine" for n in imports(p))]
    assert users == ["engine/evaluators/durable.py"]


def test_the_engine_imports_no_adapter_and_no_plugin():
    banned = ("plugins", "service", "litestar", "sqlmodel", "sqlalchemy", "httpx", "typer", "rich")
    offenders = [f"{p.relative_to(ROOT)}: {n}" for p in (ROOT / "engine").rglob("*.py") if p.name != "testing.py"
                 for n in imports(p) if n.split(".")[0] in banned]
    assert offenders == []


def test_the_pipeline_names_no_concrete_channel():
    source = (ROOT / "engine" / "pipeline.py").read_text(encoding="utf-8")
    for name in ("sms", "email", "push", "whatsapp", "line", "viber", "wechat", "call_task", "coupon", "points"):
        assert f'"{name}"' not in source and f"'{name}'" not in source


def test_rules_folder_holds_data_only():
    assert not list((ROOT / "rules").rglob("*.py"))
