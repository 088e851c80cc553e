"""docs/guarantees.md names, for each promise, the test that proves it: every
``tests/…py::test_name`` it names must exist, so a renamed or deleted test cannot
leave a promise pointing at nothing."""

from __future__ import annotations

import ast
import re

from tests.support.process import REPO

PAGE = REPO / "docs" / "guarantees.md"


def _tests_in(path: str) -> set[str]:
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
    }


def test_every_test_the_guarantees_name_exists() -> None:
    named = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)", PAGE.read_text(encoding="utf-8"))
    assert len(named) >= 20, named
    missing = [f"{path}::{name}" for path, name in named if name not in _tests_in(path)]
    assert not missing, missing
