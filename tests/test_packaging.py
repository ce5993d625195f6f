"""The wheel contains every source package: built with a non-editable install, imported from there."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]

SOURCE_FOLDERS = {"core": "nightjar"}
# conda-forge's names for PyPI packages, where they differ
CONDA_NAMES = {
    "confluent-kafka": "python-confluent-kafka",
    "duckdb": "python-duckdb",
    "light-curve": "light-curve-python",
}


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
@pytest.mark.timeout(300)  # pip builds the wheel (its build environment too) on a possibly busy machine
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


def _requirements(lines: list[str], renamed: dict[str, str] | None = None) -> dict[str, str]:
    """{PyPI package name: version specifier} (extras dropped: conda packages have none); ``renamed``: names to
    read as others (conda-forge's as PyPI's)."""
    found = {}
    for line in lines:
        req = Requirement(line)
        name = (renamed or {}).get(req.name, req.name)
        found[canonicalize_name(name)] = str(SpecifierSet(str(req.specifier)))
    return found


def test_environment_yml_lists_what_pyproject_lists() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for extra in project["optional-dependencies"].values() for r in extra]
    wanted = _requirements([*project["dependencies"], *extras])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str) and Requirement(d).name not in ("python", "pip")]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = _requirements(conda, renamed={conda: pypi for pypi, conda in CONDA_NAMES.items()})
    listed.update(_requirements([d for d in pip if not d.startswith("-e")]))
    assert listed == wanted
    (python,) = [Requirement(d) for d in env["dependencies"] if isinstance(d, str) and Requirement(d).name == "python"]
    assert python.specifier == SpecifierSet(project["requires-python"])


def test_the_layers_contract_places_every_module_of_core_and_every_package() -> None:
    """A module the contract does not name is not checked: each of core's modules and each package is in a layer."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in config if c["type"] == "layers"]
    named = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    core = {f"nightjar.{p.stem}" for p in (REPO / "core").glob("*.py") if p.stem != "__init__"}
    packages = {name for name in expected_packages() if name.count(".") == 1}
    assert named == core | packages
