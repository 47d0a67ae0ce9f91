"""The backend interface: what the rest of culturealign asks of an engine that runs a model.

A :class:`Backend` is one model loaded in one engine (Hugging Face transformers: ``hf``; vLLM: ``vllm``). It gives
the input embeddings the model sees (soft prompts are initialised and scaled from them), a :class:`Scorer` for a
fixed list of survey rows (option distributions for a batch of soft prompts in one call), chat generation with a
soft prompt, and its provenance. Gradient backends (``supports_gradients``) also give differentiable option
probabilities (:meth:`culturealign.backends.hf.SurveyScorer.differentiable_probs`).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from ..errors import CultureAlignError
from . import get_backend
from ..prompts import SurveyRow

if TYPE_CHECKING:
    from ..softprompt import SoftPrompt

PLACEMENTS = ("prefix", "suffix")

#: the optimisers that need no gradients, named when a backend cannot give them
BLACK_BOX = "--optimizer cma, de or random"


@dataclass
class RowScores:
    """Option probabilities in *listed* order ``(P, n_rows, 5)`` and the next-token mass on the options
    ``(P, n_rows)`` (NaN in sequence mode, where it is not defined)."""

    probs: np.ndarray
    mass: np.ndarray


@runtime_checkable
class Scorer(Protocol):
    """Option distributions of a fixed list of rows, for a batch of soft prompts at a time.

    Gradient backends' scorers also have ``differentiable_probs(soft, placement, pairs, checkpointing)``,
    ``grad_batch(n_tokens, placement, checkpointing)`` and ``max_memory_mb`` (used by
    :class:`culturealign.gradient.SurveyGradient`); a scorer that generates text has ``sample(...)`` (sample mode,
    see :meth:`culturealign.backends.hf.SurveyScorer.sample`).
    """

    n_rows: int

    def score(self, soft_prompts: torch.Tensor | None = None, placement: str = "prefix") -> RowScores:
        """soft_prompts ``(P, n_tokens, hidden)`` or None (the plain model, P = 1) -> probs ``(P, n_rows, 5)``."""
        ...


class Backend(abc.ABC):
    """One model in one engine. Subclasses set ``name`` and ``supports_gradients`` as class attributes and, in
    ``__init__(model, device=..., dtype=..., **backend_args)``, ``model_id`` (as the user gave it), ``tokenizer`` (a
    Hugging Face tokenizer: chat template, label ids) and ``hidden_size``."""

    name: str = ""
    supports_gradients: bool = False
    model_id: str
    tokenizer: object
    hidden_size: int

    @abc.abstractmethod
    def embed(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Token ids ``(seq,)`` -> ``(seq, hidden)``: the input embeddings the model sees (with any scaling the model
        applies, as Gemma's sqrt(hidden)), float32, detached."""

    @abc.abstractmethod
    def embedding_matrix(self) -> torch.Tensor:
        """``(vocab, hidden)``: every row as the model sees it (for the embedding scale sigma)."""

    @abc.abstractmethod
    def scorer(self, rows: Sequence[SurveyRow], labels: Sequence[str], batch_size: int | None = None,
               max_memory_mb: float | None = None, **options) -> Scorer:
        """A :class:`Scorer` for ``rows`` read at option ``labels``. ``options`` are engine-specific (``hf``:
        ``scoring``, ``use_cache``); callers pass them only when they differ from the default."""

    @abc.abstractmethod
    def generate(self, system: str | None, text: str, soft: "SoftPrompt | None" = None, **sampling) -> str:
        """The model's reply to the chat (``system``, ``text``) with ``soft`` in place (its own placement).
        ``sampling``: ``max_new_tokens``, ``temperature`` (0 = greedy), ``seed``."""

    @abc.abstractmethod
    def provenance(self) -> dict:
        """JSON-ready: ``{"backend", "id", "path", "hidden_size", "dtype", "device", ...}`` (engine versions too)."""

    def fingerprint(self) -> dict:
        """What a fitted result on this model depends on (the anchored constants' cache key): by default the
        provenance's path, dtype and device, and the backend's name."""
        prov = self.provenance()
        return {"model": prov.get("path"), "dtype": prov.get("dtype"), "device": prov.get("device"),
                "weights": None, "backend": self.name}


def require_gradients(backend: Backend | type, what: str) -> None:
    """A clear error when ``backend`` (an instance or its class, checked before a model loads) has no gradients."""
    if not getattr(backend, "supports_gradients", False):
        raise CultureAlignError(f"{what} needs gradients through the model, which the '{backend.name}' backend does "
                                f"not give: use a black-box optimiser ({BLACK_BOX}) or --backend hf")


def as_backend(model) -> Backend:
    """A :class:`Backend` as it is, or a :class:`~culturealign.models.LoadedModel` (a Hugging Face model and its
    tokenizer) wrapped in the ``hf`` backend."""
    if isinstance(model, Backend):
        return model
    return get_backend("hf")(model)   # through the registry: this interface knows no concrete backend


def check_soft(soft: torch.Tensor | None, placement: str, hidden_size: int) -> torch.Tensor | None:
    """``soft`` as ``(P, n_tokens, hidden)`` (a single ``(n_tokens, hidden)`` gains P = 1); a placement that is
    not prefix or suffix, or a width that is not the model's, is a clear error."""
    if placement not in PLACEMENTS:
        raise CultureAlignError(f"unknown placement '{placement}': use one of {', '.join(PLACEMENTS)}")
    if soft is None:
        return None
    if soft.dim() == 2:
        soft = soft.unsqueeze(0)
    if soft.dim() != 3 or soft.shape[-1] != hidden_size:
        raise CultureAlignError(f"soft prompt of shape {tuple(soft.shape)} does not fit this model: "
                                f"need (candidates, n_tokens, {hidden_size})")
    return soft


def place_soft_prompt(head: torch.Tensor, tail: torch.Tensor, soft_prompt: torch.Tensor | None,
                      placement: str) -> torch.Tensor:
    """Join head ``(Lh, H)``, soft prompt ``(n, H)`` and tail ``(Lt, H)`` in the order ``placement`` says."""
    if soft_prompt is None or soft_prompt.shape[0] == 0:
        return torch.cat([head, tail])
    soft_prompt = soft_prompt.to(head.device, head.dtype)
    return torch.cat([soft_prompt, head, tail] if placement == "prefix" else [head, soft_prompt, tail])


def label_token_ids(encode, rows: Sequence[SurveyRow], labels: Sequence[str]) -> tuple[list[int] | None, bool]:
    """The token ids of ``labels`` when each is exactly one token after every row's tail, else None; and whether
    the tails' trailing space was moved into the label. One rule for every backend.

    Tried in order: the label right after the tail; for tails ending in a space, the label with that space
    (" A" after "Answer:", how "Answer: A" is tokenised, instead of a lone space token before " A"); a space and
    the label after the tail. ``encode``: text -> token ids without special tokens.
    """
    tails = sorted({r.tail for r in rows})
    tries = [("", False), (" ", True), (" ", False)] if all(t.endswith(" ") for t in tails) else [("", False),
                                                                                                  (" ", False)]
    for space, moved in tries:
        found = [_next_tokens(encode, tail[:-1] if moved else tail, space, labels) for tail in tails]
        if all(f is not None and f == found[0] for f in found) and len(set(found[0])) == len(labels):
            return found[0], moved
    return None, False


def _next_tokens(encode, tail: str, space: str, labels: Sequence[str]) -> list[int] | None:
    base, ids = encode(tail), []
    for label in labels:
        full = encode(tail + space + label)
        if len(full) != len(base) + 1 or full[:-1] != base:
            return None
        ids.append(full[-1])
    return ids
