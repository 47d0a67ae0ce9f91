"""Shared fixtures: a tiny random Llama and a small BPE tokenizer with a ChatML template, built in memory."""
from __future__ import annotations

import os

import pytest

from toymodels import make_model, make_tokenizer  # noqa: F401  (tests import them from here)

@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return make_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model, tiny_tokenizer):
    """The tiny model saved as a Hugging Face folder, so the CLI can load it with --model."""
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # the converted default model is shared between tests (slow to build); everything else is per-session
    shared = os.environ.get("CULTUREALIGN_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    monkeypatch.setenv("CULTUREALIGN_CACHE", shared)
