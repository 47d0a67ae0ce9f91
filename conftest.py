"""Doctests in the package run on the tiny random model of the test suite (tests/toymodels.py), which is not part of
the installed package: ``make_tokenizer`` and ``make_model`` are put in every doctest's namespace here."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

from toymodels import make_model, make_tokenizer  # noqa: E402


@pytest.fixture(autouse=True)
def _toy_models_for_doctests(doctest_namespace):
    doctest_namespace["make_model"] = make_model
    doctest_namespace["make_tokenizer"] = make_tokenizer
