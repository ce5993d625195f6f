"""The wheel contains every source package: built with a non-editable install, imported from there."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SOURCE_FOLDERS = {"core": "nightjar"}


def expected_packages() -> set[str]:
    """Import names derived from the source folders: ``core`` is ``nightjar``, ``lake`` is ``nightjar.lake``…"""
    names = set()
    for init in REPO.glob("*/**/__init__.py"):
        rel = init.parent.relative_to(REPO)
        if rel.parts[0] in {"tests", "build", ".venv", "docs", "deploy"} or rel.parts[0].startswith("."):
            continue
        top = SOURCE_FOLDERS.get(rel.parts[0], f"nightjar.{rel.parts[0]}")
        names.add(".".join([top, *rel.parts[1:]]))
    return names


def test_pyproject_lists_every_source_package() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == expected_packages()
    for name in config["packages"]:
        folder = config["package-dir"].get(name, None)
        assert folder is None or (REPO / folder / "__init__.py").is_file(), name


@pytest.mark.slow
def test_non_editable_install_imports_every_package(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(REPO)],
        check=True,
        cwd=tmp_path,
    )
    assert not (REPO / "nightjar").exists(), "a nightjar/ folder at the root would shadow the package"
    names = sorted(expected_packages())
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(target)!r}), (name, module.__file__)\n"
        "print('ok', len(sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-s", "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
