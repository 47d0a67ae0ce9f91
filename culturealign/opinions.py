"""Held-out opinions: does a (soft-prompted) model answer World Values Survey questions like a country's people?

The items are GlobalOpinionQA's (Durmus et al. 2023, arXiv 2306.16388): survey questions with each country's answer
shares. Shipped: 37 World Values Survey (wave 7) questions and 39 countries (``data/globalopinionqa``, licence
CC-BY-NC-SA-4.0, apart from the code's); :func:`load_opinions` also reads the full public dataset from a path (its
JSON list, or the CSV whose ``selections`` is a ``defaultdict`` repr and ``options`` a list repr). Nothing in
alignment trains on these questions: they are held out by construction.

Each question is asked as the VSM items are (:func:`culturealign.prompts.user_message`): through the chat template,
options lettered A, B, C, ..., the next-token distribution at the letters renormalised. Non-answers ("Don't know",
"No answer", "Missing; ...": :func:`is_non_answer`) are neither offered to the model nor kept in the country's shares,
which are renormalised over the rest. Every question is asked with its options forward and reversed, the reversed
distribution mapped back; the headline figures are on the average of the two orders, each order's are reported too.

Per country: the mean similarity ``1 - JSD`` (Jensen-Shannon distance, base 2: 1 is identical, 0 disjoint) between
the model's and the country's distribution over the questions where that country has data (a country missing from a
question is skipped, never counted as zero), and the mean total variation. For the target: the same for three
model-free predictors (uniform, the mean of the other countries, the target's nearest other country), the
specificity (similarity to the target minus the mean similarity to the other countries) and the target's rank among
all countries: whom does the model sound like.

:class:`Opinions` is this as an evaluation (:mod:`culturealign.evaluations`), registered as ``opinions``.

>>> ask = Opinion("Is it good?", ("Yes", "No", "Don't know"), {"Japan": (0.6, 0.3, 0.1), "Peru": (0.2, 0.8, 0.0)})
>>> ask.answers, ask.shares("Japan").round(3).tolist(), ask.shares("Kenya")
(('Yes', 'No'), [0.667, 0.333], None)
>>> round(similarity([0.5, 0.5], ask.shares("Peru")), 4)
0.7296
"""
from __future__ import annotations

import ast
import csv
import difflib
import json
import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from .backends.base import Backend, as_backend
from .errors import CultureAlignError
from .evaluations import Evaluation, NotCovered
from .prompts import SurveyRow, render_chat, user_message
from .softprompt import SoftPrompt

DATA_FILE = "data/globalopinionqa/wvs_subset.json"
SHIPPED = "GlobalOpinionQA, WVS wave-7 subset shipped with culturealign (37 questions, 39 countries)"
ORDERS = ("forward", "reverse")

#: GlobalOpinionQA's country names -> ISO 3166 alpha-2, which :func:`culturealign.targets.lookup` takes (``"GB"``
#: finds Hofstede's "Great Britain", ``"US"`` "U.S.A.", ``"TW"`` "Taiwan"); Kenya and Lebanon have no Hofstede
#: scores (naive prompts only). Every country of the shipped subset is here; a name of the full dataset that is not
#: is looked up by name in ISO 3166 (pycountry), and one found nowhere answers only to its own name.
COUNTRY_CODES: dict[str, str] = {
    "Argentina": "AR", "Australia": "AU", "Bangladesh": "BD", "Brazil": "BR", "Canada": "CA", "Chile": "CL",
    "China": "CN", "Colombia": "CO", "Egypt": "EG", "Ethiopia": "ET", "France": "FR", "Germany": "DE",
    "Great Britain": "GB", "Indonesia": "ID", "Iran": "IR", "Iraq": "IQ", "Italy": "IT", "Japan": "JP",
    "Jordan": "JO", "Kenya": "KE", "Lebanon": "LB", "Malaysia": "MY", "Mexico": "MX", "Morocco": "MA",
    "Netherlands": "NL", "Nigeria": "NG", "Pakistan": "PK", "Peru": "PE", "Philippines": "PH", "Poland": "PL",
    "Russia": "RU", "South Korea": "KR", "Spain": "ES", "Sweden": "SE", "Taiwan ROC": "TW", "Thailand": "TH",
    "Turkey": "TR", "United States": "US", "Vietnam": "VN",
    # other spellings of the same countries, for files other than the shipped subset
    "Britain": "GB", "United Kingdom": "GB", "Russian Federation": "RU", "Taiwan": "TW", "S. Korea": "KR",
    "Korea": "KR", "Czech Rep.": "CZ", "Czech Republic": "CZ",
}

#: an option is a non-answer when its text (case, apostrophes and a trailing full stop aside) is one of these, or a
#: "/"- or ";"-separated list of them, or starts with "missing" or "other missing"
NON_ANSWERS = frozenset({"don't know", "dk", "no answer", "refused", "not asked", "not applicable", "not available"})
NON_ANSWER_RULE = ("options that are non-answers (\"Don't know\", \"No answer\", \"Refused\", \"Not asked\", "
                   "\"Not applicable\", or text starting \"Missing\" / \"Other missing\") are not offered to the model "
                   "and are dropped from the country's shares, which are renormalised over the other options")
ORDER_RULE = ("every question is asked with its options forward and reversed (the reversed distribution mapped back "
              "to the options); the headline figures are on the average of the two orders' distributions")

LETTERS = string.ascii_uppercase


def is_non_answer(option: str) -> bool:
    """Whether an option is a non-answer (:data:`NON_ANSWERS`), to be dropped.

    >>> [is_non_answer(o) for o in ("Don't know", "No answer", "Other missing; Multiple answers Mail (EVS)",
    ...                              "Missing; Not available", "DK/Refused", "Hard to say", "Other answer")]
    [True, True, True, True, True, False, False]
    """
    text = option.strip().lower().replace("\u2019", "'").rstrip(".").strip()
    if re.match(r"(other )?missing\b", text):
        return True
    return all(part.strip() in NON_ANSWERS for part in re.split(r"[/;]", text))


@dataclass(frozen=True)
class Opinion:
    """One survey question: its options as listed and each country's answer shares ``(n_options,)`` in that order."""

    question: str
    options: tuple[str, ...]
    selections: dict[str, tuple[float, ...]] = field(hash=False)
    source: str = "WVS"

    @property
    def kept(self) -> list[int]:
        """Indices of the options that are answers (non-answers dropped)."""
        return [i for i, o in enumerate(self.options) if not is_non_answer(o)]

    @property
    def answers(self) -> tuple[str, ...]:
        """The options asked: the non-answers dropped, in listed order."""
        return tuple(self.options[i] for i in self.kept)

    def shares(self, country: str) -> np.ndarray | None:
        """The country's shares over :attr:`answers`, renormalised ``(n_answers,)``; None when it has no data here
        (absent, or nothing on the answers)."""
        raw = self.selections.get(country)
        if raw is None:
            return None
        kept = np.asarray(raw, dtype=float)[self.kept]
        total = kept.sum()
        return kept / total if total > 0 else None


@dataclass(frozen=True)
class _Asked:
    """What :func:`culturealign.prompts.user_message` reads of an item."""

    text: str
    options: tuple[str, ...]
    intro: str = ""


# ---- loading ----------------------------------------------------------------------------------------------------
_DEFAULTDICT = re.compile(r"^\s*defaultdict\(\s*<class '(list|float)'>\s*,\s*(\{.*\})\s*\)\s*$", re.S)


def parse_selections(text: str) -> dict:
    """The ``selections`` of the dataset's CSV: a ``defaultdict(<class 'list'>, {...})`` repr (or a plain dict repr)
    read without ``eval`` (only the literal inside, with :func:`ast.literal_eval`).

    >>> parse_selections("defaultdict(<class 'list'>, {'Peru': [0.25, 0.75]})")
    {'Peru': [0.25, 0.75]}
    """
    match = _DEFAULTDICT.match(text)
    try:
        value = ast.literal_eval(match.group(2) if match else text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"'selections' is not a defaultdict or dict literal ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise ValueError("'selections' is not a dict")
    return value


def _literal(text: str, what: str):
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"'{what}' is not a Python literal ({type(exc).__name__})") from None


def _opinion(raw: dict) -> Opinion:
    """One record (JSON: parsed fields; CSV: repr strings) as an :class:`Opinion`; ValueError says what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("not an object with question, options and selections")
    missing = [k for k in ("question", "options", "selections") if k not in raw]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    options = _literal(raw["options"], "options") if isinstance(raw["options"], str) else raw["options"]
    selections = parse_selections(raw["selections"]) if isinstance(raw["selections"], str) else raw["selections"]
    if not isinstance(raw["question"], str) or not raw["question"].strip():
        raise ValueError("'question' is not a text")
    if not isinstance(options, (list, tuple)) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise ValueError("'options' is not a list of at least two texts")
    if not isinstance(selections, dict):
        raise ValueError("'selections' is not a dict of country -> shares")
    clean = {}
    for country, shares in selections.items():
        if not isinstance(country, str) or not isinstance(shares, (list, tuple)) or len(shares) != len(options) \
                or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0 for s in shares):
            raise ValueError(f"the shares of {country!r:.40} are not {len(options)} non-negative numbers "
                             "(one per option)")
        clean[country] = tuple(float(s) for s in shares)
    opinion = Opinion(raw["question"], tuple(options), clean, str(raw.get("source", "")))
    if len(opinion.kept) < 2:
        raise ValueError("fewer than two options are answers (the rest are non-answers)")
    if len(opinion.kept) > len(LETTERS):
        raise ValueError(f"more than {len(LETTERS)} options")
    return opinion


def _records(path: Path) -> list:
    try:
        if path.suffix.lower() == ".csv":
            csv.field_size_limit(2 ** 31 - 1)  # a selections cell holds every country's shares
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                missing = {"question", "selections", "options"} - set(reader.fieldnames or [])
                if missing:
                    raise CultureAlignError(f"{path}: no column {', '.join(sorted(missing))} (GlobalOpinionQA's CSV "
                                            "has question, selections, options, source)")
                return list(reader)
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise CultureAlignError(f"cannot read opinions from {path}: {exc}") from None
    if not isinstance(data, list):
        raise CultureAlignError(f"{path}: not a JSON list of questions")
    return data


def load_opinions(path: str | Path | None = None) -> tuple[Opinion, ...]:
    """The questions of a GlobalOpinionQA file (None: the shipped WVS subset): its JSON list, or its CSV (columns
    question, selections, options, source). A malformed record is one error naming its row (1 = the first record
    after the CSV's header)."""
    if path is None:
        return _shipped()
    path = Path(path)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise CultureAlignError(f"cannot read opinions from {path}: {exc.strerror}") from None
    return _load_file(str(path.resolve()), stamp)


@lru_cache(maxsize=4)
def _load_file(name: str, stamp: int) -> tuple[Opinion, ...]:
    """A file's questions, read once per version of it (``stamp``: its modification time)."""
    path = Path(name)
    out = []
    for i, raw in enumerate(_records(path), start=1):
        try:
            out.append(_opinion(raw))
        except ValueError as exc:
            raise CultureAlignError(f"{path}: row {i} is malformed: {exc}") from None
    if not out:
        raise CultureAlignError(f"{path} holds no questions")
    return tuple(out)


@lru_cache(maxsize=1)
def _shipped() -> tuple[Opinion, ...]:
    raw = json.loads(resources.files("culturealign").joinpath(DATA_FILE).read_text(encoding="utf-8"))
    return tuple(_opinion(r) for r in raw)


# ---- countries --------------------------------------------------------------------------------------------------
def countries(opinions: Sequence[Opinion]) -> list[str]:
    """The dataset's country names with data in ``opinions`` (:meth:`Opinion.shares`), sorted."""
    return sorted({c for o in opinions for c in o.selections if o.shares(c) is not None})


def iso_code(name: str) -> str | None:
    """ISO 3166 alpha-2 of a dataset country name (:data:`COUNTRY_CODES`, else by name in ISO 3166), or None."""
    if name in COUNTRY_CODES:
        return COUNTRY_CODES[name]
    import pycountry

    try:
        return pycountry.countries.lookup(name).alpha_2
    except LookupError:
        return None


def resolve_country(name: str, opinions: Sequence[Opinion]) -> str:
    """The dataset country that ``name`` means: a dataset name (any case) or anything
    :func:`culturealign.targets.lookup` or ISO 3166 knows ("CN", "USA", "Taiwan", "KE"); else :class:`NotCovered`.

    >>> resolve_country("USA", load_opinions()), resolve_country("TW", load_opinions())
    ('United States', 'Taiwan ROC')
    """
    from .targets import lookup

    names = countries(opinions)
    by_lower = {c.lower(): c for c in names}
    key = name.strip().lower()
    if key in by_lower:
        return by_lower[key]
    try:
        wanted = lookup(name).iso2
    except CultureAlignError:
        wanted = iso_code(name.strip())
    match = [c for c in names if wanted is not None and iso_code(c) == wanted]
    if match:
        return match[0]
    close = difflib.get_close_matches(key, list(by_lower), n=5, cutoff=0.5)
    hint = f" Closest: {', '.join(by_lower[c] for c in close)}." if close else ""
    raise NotCovered(f"the opinion questions have no answers from '{name}'.{hint} Available: {', '.join(names)}.")


def select(opinions: Sequence[Opinion], country: str | None = None, limit: int | None = None) -> list[Opinion]:
    """The questions to ask: those with the country's data (None: all), the first ``limit`` of them."""
    if country is not None:
        opinions = [o for o in opinions if o.shares(country) is not None]
    return list(opinions)[: None if limit is None else max(0, int(limit))]


# ---- metrics ----------------------------------------------------------------------------------------------------
def similarity(p: Sequence[float], q: Sequence[float]) -> float:
    """``1 - JSD(p, q)``, the Jensen-Shannon *distance* in base 2 (scipy's): 1 for equal distributions, 0 for
    disjoint ones. Inputs are renormalised.

    >>> similarity([1, 0, 0], [0, 1, 0]), similarity([0.2, 0.8], [0.2, 0.8])
    (0.0, 1.0)
    """
    from scipy.spatial.distance import jensenshannon

    p, q = np.asarray(p, float), np.asarray(q, float)
    with np.errstate(invalid="ignore"):  # equal distributions: the divergence can round to -1e-17, its root to NaN
        distance = jensenshannon(p, q, base=2)
    if np.isnan(distance) and np.isfinite(p).all() and np.isfinite(q).all():
        distance = 0.0
    return float(np.clip(1.0 - distance, 0.0, 1.0))


def total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    """Half the L1 distance between the (renormalised) distributions: 0 equal, 1 disjoint."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _figures(model: Sequence[np.ndarray], opinions: Sequence[Opinion], country: str) -> tuple[float, float, int]:
    """Mean similarity and total variation of per-question distributions against ``country``, over the questions
    where it has data; and their number."""
    pairs = [(p, o.shares(country)) for p, o in zip(model, opinions) if o.shares(country) is not None]
    return (_mean([similarity(p, q) for p, q in pairs]), _mean([total_variation(p, q) for p, q in pairs]), len(pairs))


def _predictors(opinions: Sequence[Opinion], target: str) -> dict:
    """The model-free predictors of the target's shares on its questions: uniform, the mean of the other countries'
    shares, and the nearest other country (the highest mean similarity to the target over the questions both have,
    among countries with at least half of the target's questions: an upper reference that knows the target)."""
    mine = [o for o in opinions if o.shares(target) is not None]
    uniform = [np.full(len(o.kept), 1 / len(o.kept)) for o in mine]
    others_mean = []
    for o in mine:
        rows = [o.shares(c) for c in o.selections if c != target and o.shares(c) is not None]
        others_mean.append(np.mean(rows, axis=0) if rows else None)
    keep = [i for i, m in enumerate(others_mean) if m is not None]
    out = {"uniform": _figures(uniform, mine, target),
           "others_mean": _figures([others_mean[i] for i in keep], [mine[i] for i in keep], target)}
    best = None
    for c in countries(mine):
        if c == target:
            continue
        shared = [o for o in mine if o.shares(c) is not None]
        if 2 * len(shared) < len(mine):
            continue
        figs = _figures([o.shares(c) for o in shared], shared, target)
        if best is None or figs[0] > best[1][0]:
            best = (c, figs)
    out["nearest"] = best[1] if best else (None, None, 0)
    out["nearest_country"] = best[0] if best else None
    return out


def opinion_metrics(opinions: Sequence[Opinion], by_order: dict[str, Sequence[np.ndarray]],
                    target: str | None = None) -> dict:
    """The figures of the model's distributions against every country, and against ``target`` (a dataset name).

    by_order: per order (``forward``, ``reverse``), one distribution over each question's :attr:`Opinion.answers`
    (in listed order, reversed ones mapped back). ``per_country`` ranks every country by similarity (order-averaged);
    with no target the headline ``similarity`` is that of the closest country.
    """
    averaged = [np.mean([by_order[o][i] for o in by_order], axis=0) for i in range(len(opinions))]
    per_country = {}
    for c in countries(opinions):
        sim, tv, n = _figures(averaged, opinions, c)
        per_order = {f"similarity_{o}": _figures(by_order[o], opinions, c)[0] for o in by_order}
        per_country[c] = {"similarity": sim, **per_order, "total_variation": tv, "n_questions": n,
                          "code": iso_code(c)}
    ranking = sorted(per_country, key=lambda c: -per_country[c]["similarity"])
    per_country = {c: {"rank": r, **per_country[c]} for r, c in enumerate(ranking, start=1)}
    agreement = ([similarity(a, b) for a, b in zip(by_order["forward"], by_order["reverse"])]
                 if set(ORDERS) <= set(by_order) else [])
    out = {"target": target, "closest": ranking[0] if ranking else None, "n_countries": len(per_country),
           "order_agreement": _mean(agreement), "per_country": per_country,
           "rules": {"non_answers": NON_ANSWER_RULE, "orders": ORDER_RULE,
                     "similarity": "1 - Jensen-Shannon distance (base 2), mean over the questions where the country "
                                   "has data (a country missing from a question is skipped)"}}
    if target is None:
        top = per_country[ranking[0]] if ranking else {}
        return {**out, "similarity": top.get("similarity"), "n_questions": len(opinions)}
    mine = per_country[target]
    others = [v["similarity"] for c, v in per_country.items() if c != target]
    pred = _predictors(opinions, target)
    return {**out, "similarity": mine["similarity"],
            **{f"similarity_{o}": mine[f"similarity_{o}"] for o in by_order},
            "total_variation": mine["total_variation"],
            "specificity": mine["similarity"] - float(np.mean(others)) if others else None,
            "rank": mine["rank"], "n_questions": mine["n_questions"],
            **{f"{k}_similarity": pred[k][0] for k in ("uniform", "others_mean", "nearest")},
            **{f"{k}_total_variation": pred[k][1] for k in ("uniform", "others_mean", "nearest")},
            "nearest_country": pred["nearest_country"]}


# ---- scoring ----------------------------------------------------------------------------------------------------
def opinion_rows(tokenizer, opinions: Sequence[Opinion], system: str | None = None,
                 reverse: bool = False) -> list[SurveyRow]:
    """One chat row per question (``item`` = its index in ``opinions``), options lettered A, B, ... in listed order
    (``reverse``: last first), asked as the VSM items are."""
    rows = []
    for i, o in enumerate(opinions):
        labels = list(LETTERS[:len(o.kept)])
        head, tail = render_chat(tokenizer, system, user_message(_Asked(o.question, o.answers), labels, reverse))
        rows.append(SurveyRow(i, reverse, head, tail))
    return rows


def score_opinions(backend: Backend, opinions: Sequence[Opinion], system: str | None = None,
                   soft_prompt: SoftPrompt | None = None, batch_size: int = 24,
                   orders: Sequence[str] = ORDERS) -> dict[str, list[np.ndarray]]:
    """Per order, the model's distribution over each question's answers ``(n_answers,)``, in the options' listed
    order (the reversed order's mapped back): the next-token probabilities of the letters, renormalised.

    A scorer reads one label set, so questions are scored in groups of equal option count, each with its letters.
    """
    backend = as_backend(backend)
    out = {o: [None] * len(opinions) for o in orders}
    groups: dict[int, list[int]] = {}
    for i, o in enumerate(opinions):
        groups.setdefault(len(o.kept), []).append(i)
    for k, members in sorted(groups.items()):
        asked = [opinions[i] for i in members]
        rows = [r for o in orders for r in opinion_rows(backend.tokenizer, asked, system, reverse=o == "reverse")]
        scorer = backend.scorer(rows, list(LETTERS[:k]), batch_size)
        result = (scorer.score(None) if soft_prompt is None
                  else scorer.score(soft_prompt.embeddings.unsqueeze(0), soft_prompt.placement))
        probs = result.probs[0].reshape(len(orders), len(members), k)
        for j, order in enumerate(orders):
            for m, i in enumerate(members):
                # reversed: listed position k is option n-1-k
                out[order][i] = probs[j, m, ::-1].copy() if order == "reverse" else probs[j, m].copy()
    return out


class Opinions(Evaluation):
    """GlobalOpinionQA's World Values Survey questions as an evaluation: similarity (``1 - JSD``) of the model's
    answer distributions to the target country's people, per order, against model-free predictors, its specificity
    and rank among all countries (``per_country`` ranks them all).

    ``data``: a GlobalOpinionQA JSON or CSV file (the full dataset; default: the shipped WVS subset), set by
    ``culturealign evaluate opinions --data PATH`` or :func:`with_data`.
    """

    title = "Opinions (WVS)"
    description = ("World Values Survey opinions (GlobalOpinionQA): similarity 1 - JSD to a country's answer shares, "
                   "specificity and rank among all countries.")
    headline = "similarity"
    columns = {"similarity": "similarity", "similarity_forward": "sim. forward", "similarity_reverse": "sim. reverse",
               "specificity": "specificity", "rank": "rank", "n_countries": "of countries",
               "uniform_similarity": "uniform", "others_mean_similarity": "others' mean",
               "nearest_similarity": "nearest country", "n_questions": "questions"}
    note = ("Similarity: 1 - Jensen-Shannon distance (base 2) to the target's answer shares, mean over its questions, "
            "on the average of forward and reversed option order (non-answers dropped). Specificity: similarity to "
            "the target minus the mean similarity to the other countries; rank 1: the target is the country the model "
            "sounds most like. Uniform, others' mean, nearest country: model-free predictors.")
    data: str | None = None

    def opinions(self) -> tuple[Opinion, ...]:
        return load_opinions(self.data)

    def use_data(self, path) -> None:
        """Read the questions from ``path`` (checked now) instead of the shipped subset."""
        self.data = str(path)
        self.opinions()

    def check(self, country: str | None) -> None:
        """A country with no answers in the questions is :class:`NotCovered` (the error names the closest)."""
        if country is not None:
            resolve_country(country, self.opinions())

    def run(self, session, country: str | None, system: str | None, soft_prompt: SoftPrompt | None = None,
            limit: int | None = None) -> dict:
        """:func:`opinion_metrics` of the first ``limit`` questions with the country's answers (None: all
        questions; the countries ranked, the headline the closest one's similarity)."""
        opinions = self.opinions()
        target = None if country is None else resolve_country(country, opinions)
        asked = select(opinions, target, limit)
        if not asked:
            raise NotCovered(f"no opinion questions to ask (limit {limit})")
        by_order = score_opinions(session.backend, asked, system, soft_prompt, session.config.batch_size)
        return {**opinion_metrics(asked, by_order, target), "data": self.data or SHIPPED}

    def row(self, metrics: dict) -> dict:
        """The columns, the target's dataset name and every country's similarity (``by_country``, ranked: the
        report's bar chart)."""
        return {**super().row(metrics), "target": metrics.get("target"),
                "by_country": {c: v["similarity"] for c, v in metrics.get("per_country", {}).items()}}


def with_data(path: str | Path) -> type[Opinions]:
    """An :class:`Opinions` class that reads ``path`` (e.g. the full GlobalOpinionQA CSV), to register under its own
    name: ``register_evaluation("opinions-full", with_data("global_opinions.csv"))``."""
    load_opinions(path)  # checked now
    return type("OpinionsFromFile", (Opinions,), {"data": str(path), "__module__": __name__})
