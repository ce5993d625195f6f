"""The examples in the docstrings run, so documentation cannot drift from the code (``make test`` runs them)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import nightjar


def _modules() -> list[str]:
    return sorted(
        m.name for m in pkgutil.walk_packages(nightjar.__path__, "nightjar.") if not m.name.endswith("__main__")
    )


def _with_examples(name: str) -> bool:
    module = importlib.import_module(name)
    return any(test.examples for test in doctest.DocTestFinder().find(module))


@pytest.mark.parametrize("name", [m for m in _modules() if _with_examples(m)])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see output)"
