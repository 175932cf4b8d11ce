"""A plain ``pip install .`` gives a working ``herald sample``: the samples are package data of the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCES = ("pyproject.toml", "README.md", "engine", "plugins", "service", "rules")


def source_packages() -> set[str]:
    """Every package of the source tree (a folder with ``__init__.py``)."""
    return {".".join(p.parent.relative_to(ROOT).parts) for top in ("engine", "plugins", "service")
            for p in (ROOT / top).rglob("__init__.py")}


def test_pyproject_lists_every_package_of_the_source_tree():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert listed - {"herald_samples", "herald_samples.examples"} == source_packages()
    assert config["package-dir"]["herald_samples"] == "rules"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built with pip from a copy of the sources (the checkout is left untouched)."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    for name in SOURCES:
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(item, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(src), "-w", str(tmp / "dist")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return next((tmp / "dist").glob("herald-*.whl"))


def test_the_wheel_holds_the_samples(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for sample in ("fields.yaml", "examples/summer-sale.message.yaml", "examples/personalization.yaml",
                   "examples/eligibility.yaml", "examples/channel-priority.yaml", "examples/audience.csv"):
        assert f"herald_samples/{sample}" in names
    for module in ("service/cli.py", "engine/explain.py", "engine/columnar/plan.py", "plugins/channels/sms.py"):
        assert module in names
    for package in ("engine", "plugins", "service"):  # typed packages (PEP 561): checkers read their hints
        assert f"{package}/py.typed" in names


def test_herald_demo_runs_from_the_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("HERALD_FIELDS", None)
    where = subprocess.run([sys.executable, "-c", "import service.cli as c; print(c.__file__); print(c.samples())"],
                           capture_output=True, text=True, cwd=elsewhere, env=env)
    module, samples = where.stdout.split()
    assert Path(module).is_relative_to(site) and Path(samples) == site / "herald_samples" / "examples"  # not the checkout
    demo = subprocess.run([str(site / "bin" / "herald"), "sample"], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert demo.returncode == 0, demo.stderr
    assert "200 recipients" in demo.stdout and "Summer sale" in demo.stdout


def test_from_a_checkout_or_an_editable_install_the_samples_are_the_checkouts(monkeypatch):
    import importlib.resources

    import service.cli as cli

    def editable(_name):  # what Python 3.11 raises for a namespace package of an editable install
        raise NotADirectoryError("MultiplexedPath only supports directories")

    monkeypatch.setattr(importlib.resources, "files", editable)
    assert cli.samples() == ROOT / "rules" / "examples"
