"""Talking to a (soft-prompted) model: chat generation with the soft prompt placed as in alignment."""
from __future__ import annotations

from .backends.base import Backend, as_backend
from .softprompt import SoftPrompt


def generate(backend: Backend, text: str, soft_prompt: SoftPrompt | None = None, system: str | None = None,
             max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0) -> str:
    """The model's reply to ``text``; ``temperature`` 0 decodes greedily. ``backend``: the model (a
    ``LoadedModel`` is wrapped in the ``hf`` backend)."""
    return as_backend(backend).generate(system, text, soft_prompt, max_new_tokens=max_new_tokens,
                                        temperature=temperature, seed=seed)
