"""Every module's docstring examples run (STYLE: docstrings carry small runnable examples)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import via_otlp

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(via_otlp.__path__, "via_otlp.")
    if ".control.gen" not in m.name and not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
