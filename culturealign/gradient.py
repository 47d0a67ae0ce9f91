"""Gradients of the survey objective with respect to soft prompts (white-box alignment and reach).

The objective is differentiable end to end: option probabilities -> expected answers per option order -> the
index formulas (affine in the item means) -> a loss on each order's indices (``per-order``) or on their mean
(``pooled``, as measurement's profile).
:class:`SurveyGradient` runs that chain in torch for a batch of soft prompts and accumulates the gradient into
them, in micro-batches that respect the scorer's memory limit:

- when every row fits in memory at once (no ``max_memory_mb``), the rows are scored in batches of ``batch_size``
  with their graphs kept, and one backward pass follows;
- under a memory limit, a forward pass without gradients gives the loss and its gradient with respect to every
  row's probabilities; then each micro-batch is run again with gradients and back-propagates its share
  (exact gradient accumulation for a loss that is not a sum over rows, at the cost of one extra forward pass).

Example (a tiny random model; shapes only):

>>> from culturealign.models import LoadedModel
>>> from culturealign.config import MeasureConfig
>>> from culturealign.session import Session
>>> tok = make_tokenizer(); lm = LoadedModel(make_model(tok), tok, "tiny", "tiny")
>>> session = Session(MeasureConfig(constants="zero", order="both"), lm=lm)
>>> grad = SurveyGradient(session.survey("naive", None), session.constants.values, placement="suffix")
>>> soft = torch.zeros(2, 3, 32, requires_grad=True)           # (P, n_tokens, hidden)
>>> indices = grad.backward(soft, lambda idx: idx[:, :, 0].mean(1))   # minimise PDI of both prompts
>>> indices.shape, soft.grad.shape                 # (P, n_orders, n_dimensions): both orders, the VSM 2013's six
((2, 2, 6), torch.Size([2, 3, 32]))
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .backends.base import require_gradients
from .errors import ConfigError, CultureAlignError
from .instrument import DIMENSIONS, N_OPTIONS
from .survey import Survey

#: forward-pass equivalents of one forward + backward pass (the usual rule of thumb: backward ~ 2 forwards)
FORWARD_BACKWARD_COST = 3.0


class SurveyGradient:
    """Differentiable survey answers for soft prompts ``(P, n_tokens, hidden)``.

    survey: the :class:`~culturealign.survey.Survey` (model, rows, option orders). constants: ``(n_dimensions,)``
    the constants C, one per dimension of the survey's questionnaire. placement: ``prefix`` or ``suffix``. checkpointing: recompute activations in the backward pass.
    """

    def __init__(self, survey: Survey, constants: np.ndarray, placement: str, checkpointing: bool = False):
        self.survey, self.scorer, self.placement, self.checkpointing = survey, survey.scorer, placement, checkpointing
        self.orders = survey.orders
        questionnaire = survey.questionnaire
        self.n_items = questionnaire.n_items
        # the index formulas are affine in the item means: indices = means @ W.T + b
        base = questionnaire.indices(np.full((1, self.n_items), 0.0), np.asarray(constants, dtype=float))[0]
        eye = questionnaire.indices(np.eye(self.n_items), np.asarray(constants, dtype=float))
        self.weights = torch.tensor((eye - base).T, dtype=torch.float64)        # (n_dimensions, n_items)
        self.bias = torch.tensor(base, dtype=torch.float64)                     # (n_dimensions,)
        self.answers = torch.arange(1, N_OPTIONS + 1, dtype=torch.float64)

    # ---- the differentiable chain ---------------------------------------------------------------------------------
    def expected(self, listed_probs: torch.Tensor, orders: Sequence[str] | None = None) -> torch.Tensor:
        """``(P, n_rows, 5)`` probabilities in listed order, the rows of ``orders`` one block after another (default:
        every asked order) -> ``(P, len(orders), n_items)`` expected answers per order (reversed rows mapped back)."""
        orders = self.orders if orders is None else list(orders)
        probs = listed_probs.double().reshape(listed_probs.shape[0], len(orders), self.n_items, N_OPTIONS)
        by_order = [probs[:, o].flip(-1) if order == "reverse" else probs[:, o] for o, order in enumerate(orders)]
        return torch.stack(by_order, 1) @ self.answers

    def indices(self, listed_probs: torch.Tensor, orders: Sequence[str] | None = None) -> torch.Tensor:
        """``(P, n_rows, 5)`` -> ``(P, n_orders, n_dimensions)`` each order's indices with the constants applied (their
        mean over the orders is the pooled profile: the indices are affine in the expected answers)."""
        return self.expected(listed_probs, orders) @ self.weights.T + self.bias

    # ---- gradient accumulation ------------------------------------------------------------------------------------
    def backward(self, soft: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                 orders: Sequence[int] | None = None) -> np.ndarray:
        """Accumulate ``d sum(loss_fn(indices)) / d soft`` into ``soft.grad``; returns the indices
        ``(P, n_orders, n_dimensions)``.

        soft: ``(P, n_tokens, hidden)`` leaf with ``requires_grad``. loss_fn: ``(P, n_orders, n_dimensions)`` indices
        -> ``(P,)`` losses (float64 torch ops). orders: positions in :attr:`orders` of the blocks to run (a
        stochastic step, ``--rows-per-step``); default every one. The indices returned are those of ``soft``
        before any update, one row per order run.
        """
        if not soft.requires_grad:
            raise CultureAlignError("the soft prompt must require gradients")
        chosen = list(range(len(self.orders))) if orders is None else sorted(orders)
        names = [self.orders[o] for o in chosen]
        rows = [o * self.n_items + i for o in chosen for i in range(self.n_items)]   # rows are order-major
        n_cand = soft.shape[0]
        pairs = [(c, r) for c in range(n_cand) for r in rows]
        # a scorer that shares an item's stem across its orders wants them in one micro-batch
        ordered = getattr(self.scorer, "ordered_for_stems", list)(pairs)
        micro = self.scorer.grad_batch(soft.shape[1], self.placement, self.checkpointing)
        batches = [ordered[i:i + micro] for i in range(0, len(ordered), micro)]
        if self.scorer.max_memory_mb and len(batches) > 1:
            return self._two_pass(soft, loss_fn, batches, rows, names)
        probs = torch.cat([self.scorer.differentiable_probs(soft, self.placement, b, self.checkpointing)
                           for b in batches])
        position = {pair: i for i, pair in enumerate(ordered)}
        probs = probs[torch.tensor([position[pair] for pair in pairs])]        # back to the rows' order
        indices = self.indices(probs.view(n_cand, len(rows), N_OPTIONS), names)
        loss_fn(indices).sum().backward()
        return indices.detach().numpy()

    def _two_pass(self, soft: torch.Tensor, loss_fn, batches, rows: list[int], names: list[str]) -> np.ndarray:
        with torch.no_grad():
            listed = torch.as_tensor(self.scorer.score(soft.detach(), self.placement).probs)[:, rows]
        listed.requires_grad_(True)
        indices = self.indices(listed, names)
        (row_grad,) = torch.autograd.grad(loss_fn(indices).sum(), listed)   # (P, len(rows), 5)
        position = {r: i for i, r in enumerate(rows)}
        for batch in batches:
            probs = self.scorer.differentiable_probs(soft, self.placement, batch, self.checkpointing)
            weights = torch.stack([row_grad[c, position[r]] for c, r in batch]).to(probs.dtype)
            (probs * weights).sum().backward()
        return indices.detach().numpy()

    @property
    def step_cost(self) -> float:
        """Forward-pass equivalents of one gradient step (an extra forward under a memory limit)."""
        return FORWARD_BACKWARD_COST + (1.0 if self.scorer.max_memory_mb else 0.0)


def alignment_loss(target: np.ndarray, dims: list[str], kind: str = "l1", delta: float = 2.0,
                   dimensions: Sequence[str] = DIMENSIONS, objective: str = "per-order", weight: float = 1.0):
    """``(P, n_orders, n_dimensions)`` indices -> ``(P,)`` losses against ``target`` on ``dims``: true L1, or Huber
    with ``delta`` index points (smooth near the target; equal to L1 - delta/2 beyond it), of each order's indices
    averaged over the orders (``per-order``) or of their mean (``pooled``), times ``weight`` (1 / the number of
    wordings, so that wordings trained on together average). ``dimensions``: the columns of the indices, the
    questionnaire's dimensions (default the VSM 2013's)."""
    index = [list(dimensions).index(d) for d in dims]
    t = torch.as_tensor(np.asarray(target, dtype=float))

    def loss(indices: torch.Tensor) -> torch.Tensor:
        if objective == "pooled":
            indices = indices.mean(1, keepdim=True)
        err = indices[..., index] - t                      # (P, n_orders or 1, len(dims))
        if kind == "l1":
            per_block = err.abs().sum(-1)
        else:
            per_block = torch.nn.functional.huber_loss(err, torch.zeros_like(err), reduction="none",
                                                       delta=delta).sum(-1) / delta
        return weight * per_block.mean(-1)
    return loss


def reach(session, country=None, style: str = "naive", soft=None, steps: int = 10, lr: float = 0.01,
          dimensions: list[str] | None = None, seed: int = 0, checkpointing: bool = False, on_step=None) -> dict:
    """How far soft prompts can move each index on this model, with every option order asked moving together: for
    every dimension, push it down and then up with Adam for ``steps`` gradient steps from the alignment's starting
    point, and report the range reached, pooled and per order.

    Down descends the highest of the orders' indices (up: raises the lowest), so a range is one that each order
    alone reaches: a model that answers by option position can move the pooled index only by moving the orders
    apart, and shows a narrow per-order range. session: a :class:`~culturealign.session.Session`. country: optional
    target (its scores are shown next to the range, and the start text names it). soft: a
    :class:`~culturealign.config.SoftPromptConfig` (placement, tokens, init). Returns ``{"dimensions": {dim:
    {"start", "lowest", "highest", "target", "reachable", "by_order": {order: {"start", "lowest", "highest",
    "reachable"}}}}, ...}``; ``reachable`` is None without a target. ``on_step(dim, direction, step, value)``
    reports progress (``value``: the pooled index). Cost: ``2 * len(dimensions) * steps`` gradient steps.
    """
    from .config import SoftPromptConfig
    from .softprompt import initial_embeddings

    if steps < 1:
        raise ConfigError(f"reach.steps must be at least 1, not {steps}", "reach.steps")
    require_gradients(session.backend, "reach")
    soft = soft or SoftPromptConfig()
    all_dims = session.questionnaire.dimensions
    dims = list(dimensions or all_dims)
    survey = session.survey(style, country)
    session.resolve_constants()
    constants = session.constants_for(country) if country else session.constants
    grad = SurveyGradient(survey, constants.values, soft.placement, checkpointing)
    p0 = initial_embeddings(soft, session.backend, session.backend.tokenizer, country.name if country else None, seed)
    out: dict = {}

    def summary(values: list[float], target) -> dict:
        low, high = min(values), max(values)
        return {"start": values[0], "lowest": low, "highest": high,
                "reachable": None if target is None else bool(low <= target <= high)}

    for dim in dims:
        d = all_dims.index(dim)
        target = country.scores.get(dim) if country else None
        seen = {o: [] for o in grad.orders}    # every order's index at every step of both pushes
        trajectory = {}
        for direction, push in (("down", lambda idx: idx[:, :, d].max(1).values),
                                ("up", lambda idx: -idx[:, :, d].min(1).values)):
            prompt = p0.clone().unsqueeze(0).requires_grad_(True)
            adam = torch.optim.Adam([prompt], lr=lr)
            pooled = []
            for step in range(steps + 1):
                adam.zero_grad(set_to_none=True)
                if step == steps:   # the last prompt is measured, not stepped
                    with torch.no_grad():
                        by_order = grad.indices(torch.as_tensor(
                            grad.scorer.score(prompt.detach(), soft.placement).probs))[0, :, d]
                else:
                    by_order = torch.as_tensor(grad.backward(prompt, push)[0, :, d])
                    adam.step()
                for o, order in enumerate(grad.orders):
                    seen[order].append(float(by_order[o]))
                pooled.append(float(by_order.mean()))
                if on_step:
                    on_step(dim, direction, step, pooled[-1])
            trajectory[direction] = pooled
        out[dim] = {**summary(trajectory["down"] + trajectory["up"], target), "target": target,
                    "by_order": {o: summary(v, target) for o, v in seen.items()}, "trajectory": trajectory}
    return {"dimensions": out, "steps": steps, "lr": lr, "placement": soft.placement, "n_tokens": soft.n_tokens,
            "prompt": style, "country": country.name if country else None, "orders": list(grad.orders),
            "constants": constants.to_dict(), "gradient_steps": 2 * len(dims) * steps}
