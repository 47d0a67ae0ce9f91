"""CulturalBench-Hard (Chiu et al. 2024, arXiv 2410.02677): cultural knowledge as binary judgements.

Each of the 1,227 questions comes with four candidate answers; every (question, answer) pair is one judgement
"is this answer correct? True/False" (4,908 in all). A question counts as right only when all four of its
judgements are right, which is what makes the benchmark hard (chance is 1/16 per question).

:class:`CulturalBench` is the benchmark as an evaluation (:mod:`culturealign.evaluations`), registered as
``culturalbench``: what ``culturealign evaluate culturalbench`` and ``culturealign experiment`` run.
"""
from __future__ import annotations

import difflib
import json
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Sequence

import numpy as np

from .errors import CultureAlignError
from .backends.base import Backend, as_backend
from .evaluations import Evaluation, NotCovered
from .prompts import SurveyRow, render_chat
from .softprompt import SoftPrompt
from .targets import lookup

DATA_FILE = "data/culturalbench/CulturalBench-Hard.json"
LABELS = ["True", "False"]
INSTRUCTION = "Is this answer correct? Answer True or False."


@dataclass(frozen=True)
class Judgement:
    """One (question, candidate answer) pair; ``answer`` is whether the candidate is correct."""

    question_idx: int
    question: str
    option: str
    answer: bool
    country: str


@lru_cache(maxsize=1)
def _all_judgements() -> tuple[Judgement, ...]:
    raw = json.loads(resources.files("culturealign").joinpath(DATA_FILE).read_text(encoding="utf-8"))
    out = [Judgement(int(r["question_idx"]), r["prompt_question"], r["prompt_option"], r["answer"].upper() == "TRUE",
                     r["country"]) for r in raw]
    # sorted() is stable, so the four options keep their file order within a question
    return tuple(sorted(out, key=lambda j: j.question_idx))


def countries() -> list[str]:
    """The dataset's country names, sorted (45, e.g. "South Korea", "United States", "Hong Kong")."""
    return sorted({j.country for j in _all_judgements()})


def resolve_country(name: str) -> str:
    """The dataset country that ``name`` means: a dataset name (any case) or anything
    :func:`culturealign.targets.lookup` knows ("CN", "USA", "Great Britain"); else :class:`NotCovered`."""
    names = countries()
    by_lower = {c.lower(): c for c in names}
    key = name.strip().lower()
    if key in by_lower:
        return by_lower[key]
    try:
        wanted = lookup(name).code
    except CultureAlignError:
        wanted = None
    if wanted is not None:
        # Hofstede and the dataset spell some names differently ("U.S.A." / "United States"): compare the
        # Hofstede code each dataset name resolves to
        for c in names:
            try:
                if lookup(c).code == wanted:
                    return c
            except CultureAlignError:
                continue  # a dataset country Hofstede does not cover (Lebanon, Nepal)
    close = difflib.get_close_matches(key, list(by_lower), n=5, cutoff=0.5)
    hint = f" Closest: {', '.join(by_lower[c] for c in close)}." if close else ""
    raise NotCovered(f"CulturalBench has no country '{name}'.{hint} Available: {', '.join(names)}.")


def load_culturalbench(country: str | None = None, limit: int | None = None) -> list[Judgement]:
    """The judgements of one country (None or "all": every country), in question order.

    ``limit`` keeps the first N questions (after the country filter) with all four judgements each.
    """
    items = list(_all_judgements())
    if country is not None and country.strip().lower() != "all":
        wanted = resolve_country(country)
        items = [j for j in items if j.country == wanted]
    if limit is not None:
        keep = sorted({j.question_idx for j in items})[: max(0, int(limit))]
        keep_set = set(keep)
        items = [j for j in items if j.question_idx in keep_set]
    return items


def user_prompt(judgement: Judgement) -> str:
    return f"{judgement.question}\n{judgement.option}\n{INSTRUCTION}"


def judgement_rows(tokenizer, judgements: Sequence[Judgement], system: str | None = None) -> list[SurveyRow]:
    """One chat row per judgement (``item`` = its index in ``judgements``), ready for a backend's scorer.

    ``system``: an optional system message, e.g. :func:`culturealign.prompts.system_message` for persona / icl.
    """
    rows = []
    for i, j in enumerate(judgements):
        head, tail = render_chat(tokenizer, system, user_prompt(j))
        rows.append(SurveyRow(i, False, head, tail))
    return rows


def score_judgements(backend: Backend, judgements: Sequence[Judgement], system: str | None = None,
                     soft_prompt: SoftPrompt | None = None, batch_size: int = 24) -> np.ndarray:
    """p(True) ``(n_judgements,)``: the model's next-token probability of "True", renormalised over True/False.

    backend: the model (a ``LoadedModel`` is wrapped in the ``hf`` backend). A soft prompt is placed as in
    alignment (its own ``placement``, prefix or suffix).
    """
    if not judgements:
        return np.zeros(0)
    backend = as_backend(backend)
    rows = judgement_rows(backend.tokenizer, judgements, system)
    scorer = backend.scorer(rows, LABELS, batch_size)
    if soft_prompt is None:
        result = scorer.score(None)
    else:
        result = scorer.score(soft_prompt.embeddings.unsqueeze(0), soft_prompt.placement)
    return result.probs[0, :, 0]


def _accuracies(judgements: Sequence[Judgement], correct: np.ndarray) -> tuple[float, float, int]:
    per_question: dict[int, bool] = defaultdict(lambda: True)
    for j, ok in zip(judgements, correct):
        per_question[j.question_idx] &= bool(ok)
    n_q = len(per_question)
    q_acc = float(np.mean(list(per_question.values()))) if n_q else float("nan")
    j_acc = float(np.mean(correct)) if len(correct) else float("nan")
    return j_acc, q_acc, n_q


def culturalbench_metrics(judgements: Sequence[Judgement], p_true: np.ndarray) -> dict:
    """Judgement and question accuracy, overall and per country; a judgement says True iff p_true > 0.5.

    Returns ``{"judgement_accuracy", "question_accuracy", "n_judgements", "n_questions",
    "per_country": {country: {"judgement_accuracy", "question_accuracy", "n_questions"}}}`` (accuracies in 0..1).
    """
    p_true = np.asarray(p_true, dtype=float).ravel()
    if p_true.shape[0] != len(judgements):
        raise CultureAlignError(f"{p_true.shape[0]} probabilities for {len(judgements)} judgements")
    correct = (p_true > 0.5) == np.array([j.answer for j in judgements], dtype=bool)
    j_acc, q_acc, n_q = _accuracies(judgements, correct)
    per_country = {}
    for c in sorted({j.country for j in judgements}):
        idx = [i for i, j in enumerate(judgements) if j.country == c]
        cj, cq, cn = _accuracies([judgements[i] for i in idx], correct[idx])
        per_country[c] = {"judgement_accuracy": cj, "question_accuracy": cq, "n_questions": cn}
    return {"judgement_accuracy": j_acc, "question_accuracy": q_acc, "n_judgements": len(judgements),
            "n_questions": n_q, "per_country": per_country}


class CulturalBench(Evaluation):
    """CulturalBench-Hard as an evaluation: judgement and question accuracy (``per_country`` too; an experiment row
    keeps the overall accuracies and the number of questions)."""

    title = "CulturalBench-Hard"
    description = "CulturalBench-Hard: accuracy per True/False judgement and per question (all four judgements right)."
    headline = "question_accuracy"
    columns = {"judgement_accuracy": "judgement acc.", "question_accuracy": "question acc.", "n_questions": "questions"}
    note = "Accuracies are means over seeds; a question is right only when all four of its True/False judgements are."

    def check(self, country: str | None) -> None:
        """A country the benchmark has no questions about is :class:`NotCovered` (the error names the closest)."""
        if country is not None and country.strip().lower() != "all":
            resolve_country(country)

    def run(self, session, country: str | None, system: str | None, soft_prompt: SoftPrompt | None = None,
            limit: int | None = None) -> dict:
        """:func:`culturalbench_metrics` of the first ``limit`` questions about ``country`` (None: every country)."""
        judgements = load_culturalbench(country, limit)
        p_true = score_judgements(session.backend, judgements, system, soft_prompt, session.config.batch_size)
        return culturalbench_metrics(judgements, p_true)
