"""A model taking the survey: answer distributions per item, in answer order, with order diagnostics.

:class:`Survey` binds a backend (the model), a questionnaire, a prompt configuration and (for persona / icl) a country.
``Survey.answer(soft_prompts)`` returns :class:`SurveyAnswers` for a batch of candidates in one call.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from .backends.base import Backend, as_backend
from .config import PromptConfig
from .errors import CultureAlignError
from .instrument import N_OPTIONS, Questionnaire
from .objective import Objective
from .prompts import LABELS, build_rows
from .targets import CountryTarget

ANSWERS = np.arange(1, N_OPTIONS + 1, dtype=float)


@dataclass
class SurveyAnswers:
    """Answer distributions of P candidates.

    probs_by_order: ``(P, n_orders, n_items, 5)`` (the VSM 2013: 24 items), answer order (column k is answer k+1),
    reversed rows mapped back.
    mass_by_order: ``(P, n_orders, n_items)`` next-token probability mass on the five options (NaN if not defined).
    orders: the option orders asked, e.g. ``["forward", "reverse"]``.
    unparsed: ``(P, n_orders, n_items)`` counts of unparsable replies (sample mode only; zeros otherwise).
    """

    probs_by_order: np.ndarray
    mass_by_order: np.ndarray
    orders: list[str]
    unparsed: np.ndarray | None = None

    @property
    def probs(self) -> np.ndarray:
        """``(P, n_items, 5)`` averaged over the orders asked (the order-balanced distribution for ``both``)."""
        return np.nanmean(self.probs_by_order, axis=1)

    @property
    def expected(self) -> np.ndarray:
        """``(P, n_items)`` expected answers E[a] = sum_k k p(k), on the 1..5 scale."""
        return self.probs @ ANSWERS

    @property
    def expected_by_order(self) -> np.ndarray:
        return self.probs_by_order @ ANSWERS

    @property
    def mass(self) -> np.ndarray:
        return np.nanmean(self.mass_by_order, axis=1) if np.isfinite(self.mass_by_order).any() else self.mass_by_order[:, 0]

    @property
    def spread(self) -> np.ndarray:
        """``(P,)`` standard deviation of the expected answers over the items: near 0 means the answers ignore the items."""
        return self.expected.std(axis=1)

    @property
    def order_correlation(self) -> np.ndarray | None:
        """``(P,)`` Pearson r between item profiles under forward and reversed option order (answers mapped
        back); None unless both orders were asked. Near +1: content-driven; near -1: position-driven."""
        if self.orders != ["forward", "reverse"]:
            return None
        fwd, rev = self.expected_by_order[:, 0], self.expected_by_order[:, 1]
        return np.array([_pearson(a, b) for a, b in zip(fwd, rev)])


def parse_answer(text: str, labels: list[str]) -> int | None:
    """Index of the option a reply chooses, or None when it names none or several (counted as unparsable).

    Labels count as standalone tokens only ("12" is not 1), and a sentence-initial "A" followed by a lower-case word
    is the article ("A person like me would choose D" is D; "I would say A or B" names two options).
    """
    alternatives = "|".join(map(re.escape, labels))
    found = {m.group(1) for m in re.finditer(rf"(?<![0-9A-Za-z])({alternatives})(?![0-9A-Za-z])", text)
             if not (m.group(1) == "A" and re.match(r"\s+[a-z]", text[m.end():])
                     and re.search(r"(^|[.!?:]\s+)\W*$", text[:m.start()]))}
    return labels.index(found.pop()) if len(found) == 1 else None


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


class Survey:
    """The questionnaire's items put to one model under one prompt configuration."""

    def __init__(self, backend: Backend, questionnaire: Questionnaire, prompt: PromptConfig,
                 country: CountryTarget | None = None, batch_size: int = 24, use_cache: bool = True,
                 scoring: str = "auto", max_memory_mb: float | None = None):
        backend = as_backend(backend)  # a LoadedModel is wrapped in the hf backend
        self.backend, self.questionnaire, self.prompt, self.country = backend, questionnaire, prompt, country
        self.rows = build_rows(questionnaire, backend.tokenizer, prompt, country)
        self.orders = ["forward", "reverse"] if prompt.order == "both" else [prompt.order]
        # engine-specific options only when they differ from the default, so any backend takes the common case
        options = {**({} if use_cache else {"use_cache": False}), **({} if scoring == "auto" else {"scoring": scoring})}
        self.scorer = backend.scorer(self.rows, LABELS[prompt.labels], batch_size, max_memory_mb, **options)

    @property
    def hidden_size(self) -> int:
        return self.backend.hidden_size

    def answer(self, soft_prompts: torch.Tensor | None = None, placement: str = "prefix") -> SurveyAnswers:
        """Answer distributions for ``soft_prompts`` ``(P, n_tokens, hidden)`` (or the plain model)."""
        scores = self.scorer.score(soft_prompts, placement)
        return self._by_order(scores.probs, scores.mass)

    def _by_order(self, listed_probs: np.ndarray, mass: np.ndarray, unparsed=None) -> SurveyAnswers:
        n_cand, n_items = listed_probs.shape[0], self.questionnaire.n_items
        probs = listed_probs.reshape(n_cand, len(self.orders), n_items, N_OPTIONS).copy()
        mass = mass.reshape(n_cand, len(self.orders), n_items)
        for o, order in enumerate(self.orders):
            if order == "reverse":  # listed position k means answer 6-k
                probs[:, o] = probs[:, o, :, ::-1]
        if unparsed is not None:
            unparsed = unparsed.reshape(n_cand, len(self.orders), n_items)
        return SurveyAnswers(probs, mass, self.orders, unparsed)

    @torch.no_grad()
    def sample(self, n_samples: int, seed: int = 0, soft_prompt: torch.Tensor | None = None,
               placement: str = "prefix", max_new_tokens: int = 8, temperature: float = 1.0) -> SurveyAnswers:
        """The CAT protocol: generate ``n_samples`` replies per item, parse the first option label in each.

        Distributions are the frequencies of the parsed answers; unparsable replies are counted in ``unparsed``
        and excluded from the frequencies (an item with none parsed gets NaN).
        """
        if n_samples < 1:
            raise CultureAlignError("--samples must be at least 1")
        labels = LABELS[self.prompt.labels]
        if not hasattr(self.scorer, "sample"):
            raise CultureAlignError(f"the '{self.backend.name}' backend does not generate replies for sample mode: "
                                    "use --answer-mode distribution or --backend hf")
        counts = np.zeros((1, len(self.rows), N_OPTIONS))
        unparsed = np.zeros((1, len(self.rows)))
        if soft_prompt is not None and soft_prompt.dim() == 3 and soft_prompt.shape[0] != 1:
            raise CultureAlignError(f"sample mode answers with one soft prompt at a time, not a batch of "
                                    f"{soft_prompt.shape[0]}: pass (n_tokens, hidden) or (1, n_tokens, hidden)")
        soft = soft_prompt[0] if soft_prompt is not None and soft_prompt.dim() == 3 else soft_prompt
        replies = self.scorer.sample(soft, placement, n_samples, seed, max_new_tokens, temperature)
        for r, texts in enumerate(replies):
            for text in texts:
                answer = parse_answer(text, labels)
                if answer is None:
                    unparsed[0, r] += 1
                else:
                    counts[0, r, answer] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = counts / counts.sum(-1, keepdims=True)
        return self._by_order(probs, np.full(unparsed.shape, np.nan), unparsed)


# ---- the measurement record (Session.measure, compare, experiment) ----------------------------------------------
ORDER_WARNING_R = 0.3
SPREAD_WARNING = 0.1


def measurement_record(questionnaire: Questionnaire, objective: Objective, answers: SurveyAnswers,
                       style: str) -> dict:
    expected = answers.expected[0]
    indices = objective.indices(expected)[0]
    target = objective.target
    order_indices = objective.indices(answers.expected_by_order[0])     # (n_orders, n_dimensions)
    dims = {}
    for d, dim in enumerate(questionnaire.dimensions):
        t = target.scores.get(dim)
        dims[dim] = {"name": questionnaire.names[dim], "target": t, "model": float(indices[d]),
                     "by_order": {order: float(order_indices[o, d]) for o, order in enumerate(answers.orders)},
                     "abs_diff": None if t is None else float(abs(indices[d] - t)),
                     "in_loss": dim in objective.dimensions, "source": target.sources.get(dim)}
    items = []
    by_order = answers.expected_by_order[0]   # (n_orders, n_items)
    for i, item in enumerate(questionnaire.items):
        row = {"item": item.id, "text": item.text, "expected": float(expected[i]),
               "probs": [float(p) for p in answers.probs[0, i]], "mass": finite_or_none(answers.mass[0, i])}
        for o, order in enumerate(answers.orders):
            row[f"expected_{order}"] = float(by_order[o, i])
        if answers.unparsed is not None:
            row["unparsed"] = int(answers.unparsed[0, :, i].sum())
        items.append(row)
    # the pooled profile's loss, and each order's own: they disagree when the orders are moved apart
    by_order_loss = {order: float(objective.loss(by_order[o][None])[0]) for o, order in enumerate(answers.orders)}
    return {"country": target.to_dict(), "prompt": style, "loss_dimensions": objective.dimensions,
            "loss": float(objective.loss(expected)[0]), "loss_by_order": by_order_loss,
            "per_order_loss": float(np.mean(list(by_order_loss.values()))), "indices": dims, "items": items,
            "diagnostics": diagnostics(answers)}


def finite_or_none(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def diagnostics(answers: SurveyAnswers) -> dict:
    """Answer-format health: item spread, option mass, order consistency, and a plain warning."""
    spread = float(answers.spread[0])
    r = answers.order_correlation
    r = None if r is None else finite_or_none(r[0])
    mass = answers.mass[0]
    warnings = []
    if r is not None and (r < ORDER_WARNING_R):
        warnings.append(f"answers follow option position, not content (forward/reverse profile r = {r:.2f}): "
                        "item-level answers and indices reflect the answer format, not the model's values")
    if r is None and len(answers.orders) == 1:
        warnings.append("order consistency not checked: use --order both to detect position-driven answers")
    if spread < SPREAD_WARNING:
        warnings.append(f"answers barely vary across items (SD {spread:.3f} on the 1-5 scale)")
    out = {"item_spread_sd": spread, "mean_option_mass": finite_or_none(np.nanmean(mass)) if np.isfinite(mass).any() else None,
           "order_correlation": r, "orders": answers.orders, "warnings": warnings}
    if answers.unparsed is not None:
        out["unparsed_replies"] = int(answers.unparsed.sum())
    return out
