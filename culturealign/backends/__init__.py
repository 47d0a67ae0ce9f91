"""Scoring backends, found by name (``--backend``). Placeholder registry: the backend seam replaces this file.

A backend is registered as a lazy ``"module:Class"`` string, so that naming one never imports another's heavy
dependencies (vLLM is only imported when ``--backend vllm`` is asked for).
"""
from __future__ import annotations

import importlib

from ..errors import CultureAlignError

BACKENDS: dict[str, str] = {}


def register_backend(name: str, target: str) -> None:
    """Register ``target`` (``"package.module:Class"``) as the backend ``name``."""
    BACKENDS[name] = target


def load_backend(name: str, *args, **kwargs):
    """Construct the backend ``name`` with ``args``/``kwargs`` (the model id and the engine's own options)."""
    if name not in BACKENDS:
        raise CultureAlignError(f"unknown backend '{name}': use one of {', '.join(sorted(BACKENDS))}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(*args, **kwargs)


register_backend("vllm", "culturealign.backends.vllm:VLLMBackend")
