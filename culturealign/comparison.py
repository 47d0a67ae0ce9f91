"""Comparisons of a learned soft prompt: against the prompting baselines (the paper's, :func:`compare`), and with
itself across option orders and questionnaires (:func:`robustness`).

Benchmarks of a model's answers beyond the survey (CulturalBench-Hard and the next ones) are evaluations:
:mod:`culturealign.evaluations`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .config import AUTO_VALIDATION, TEST_WORDING, VALIDATION_WORDING, MeasureConfig
from .errors import CultureAlignError
from .session import Session
from .survey import measurement_record
from .runs import load_run
from .softprompt import SoftPrompt, load_soft_prompt
from .targets import CountryTarget, targets_for

BASELINES = ("naive", "persona", "icl")


def published_mean_loss(country: CountryTarget, targets, dimensions) -> float:
    """The loss of the model-free predictor that answers every country with the mean of the *other* countries'
    published scores (those with a score on every loss dimension: leave-one-out). Unlike the reference-mean
    predictor C, which is the model's own constants, it depends on no model."""
    dims = list(dimensions)
    others = [c.vector(dims) for c in targets.countries
              if c.name != country.name and all(d in c.scores for d in dims)]
    if not others:
        raise CultureAlignError(f"no other country has scores on {', '.join(dims)}: no published mean to compare with")
    return float(np.abs(np.mean(others, axis=0) - country.vector(dims)).sum())


def load_run_prompt(run_dir: str | Path, session: Session) -> tuple[SoftPrompt, str]:
    """The soft prompt of a run folder (checked against the model) and the prompt style it was trained with."""
    prompt = load_soft_prompt(run_dir, session.backend)
    return prompt, prompt.metadata.get("prompt", "naive")


def compare(session: Session, country: CountryTarget, soft_prompts: dict[str, SoftPrompt | tuple[SoftPrompt, str]]
            | None = None, methods: tuple[str, ...] = BASELINES, wordings: dict[str, Session] | None = None) -> dict:
    """Target, the prompting baselines, the reference-mean and published-mean predictors and each soft prompt, per
    dimension and loss.

    ``soft_prompts`` maps a label (e.g. the run folder) to a soft prompt and the prompt style it was trained with.
    ``wordings`` maps a role (``validation``, ``test``) to a session on another wording of the instrument (sharing the
    model and constants, :meth:`~culturealign.session.Session.with_questionnaire`): each prompt's per-order loss
    there is reported beside the training wording's. Returns ``{"country", "loss_dimensions", "constants", "rows":
    [{"method", "indices": {dim: v}, "loss", "per_order_loss", "wordings": {role: per-order loss}}]}``; ``loss``
    is the pooled profile's (orders averaged first), ``per_order_loss`` the mean of each order's own.
    """
    session.resolve_constants()
    objective = session.objective(country)
    constants = session.constants_for(country)  # an anchor country is left out of its own constants
    dims = session.questionnaire.dimensions
    rows = [{"method": "target", "indices": {d: country.scores.get(d) for d in dims}, "loss": 0.0}]
    rows.append({"method": "reference mean", "indices": constants.to_dict()["values"],
                 "loss": objective.reference_mean_loss()})
    rows.append({"method": "published mean", "indices": _published_mean(country, session.targets, dims),
                 "loss": published_mean_loss(country, session.targets, objective.dimensions)})
    prompts = {style: (None, style) for style in methods}
    for label, item in (soft_prompts or {}).items():
        prompts[label] = item if isinstance(item, tuple) else (item, item.metadata.get("prompt", "naive"))
    for label, (prompt, style) in prompts.items():
        rec = measurement_record(session.questionnaire, objective, session.answers(style, country, prompt), style)
        held_out = {}
        for role, other in (wordings or {}).items():
            expected = other.answers(style, country, prompt).expected_by_order
            held_out[role] = float(other.objective(country).survey_loss(expected, "per-order")[0])
        rows.append({"method": label, "indices": {d: rec["indices"][d]["model"] for d in dims},
                     "loss": rec["loss"], "per_order_loss": rec["per_order_loss"], "wordings": held_out,
                     "diagnostics": rec["diagnostics"]})
    return {"country": country.to_dict(), "loss_dimensions": objective.dimensions,
            "constants": constants.to_dict(), "rows": rows,
            "wordings": {role: other.questionnaire.source for role, other in (wordings or {}).items()}}


def _published_mean(country: CountryTarget, targets, dims) -> dict:
    """The other countries' mean published score per dimension (None where none has one)."""
    out = {}
    for d in dims:
        values = [c.scores[d] for c in targets.countries if c.name != country.name and d in c.scores]
        out[d] = float(np.mean(values)) if values else None
    return out


def compare_runs(runs: list[str | Path], country: str | None = None, settings: dict | None = None,
                 on_session=None, test: bool = False) -> dict:
    """:func:`compare` for the soft prompts of run folders ``runs``, measured with the first run's settings (or the
    defaults without a run) and its country unless ``country`` is given. ``settings`` overrides measurement fields
    (``model``, ``constants``, ``dimensions``, ``device``, ``dtype``, ``backend``, ...; a None value keeps the run's).
    ``on_session()`` is called once the target is checked, before the model loads (the CLI refuses an existing
    output file there). Beside the training wording, every prompt is scored per order on the first run's
    validation wording (without a run: the shipped one, for the VSM 2013) and, with ``test``, on the shipped test
    wording; the result carries the session's provenance."""
    base, validate = MeasureConfig(), AUTO_VALIDATION
    if runs:
        _, saved = load_run(runs[0])
        base, country, validate = saved.measure, country or saved.country, saved.validate
    if country is None:
        raise CultureAlignError("give --country or a run folder")
    base = base.updated(**(settings or {}))
    targets = targets_for(base.questionnaire)
    target = targets.lookup(country)
    targets.check([target], base.dimensions)
    if on_session:
        on_session()
    session = Session(base)
    session.resolve_constants()
    roles = {"validation": VALIDATION_WORDING if validate == AUTO_VALIDATION else validate,
             **({"test": TEST_WORDING} if test else {})}
    wordings = {}
    for role, wording in roles.items():
        try:
            wordings[role] = session.with_questionnaire(wording)
        except CultureAlignError:   # another instrument: no shipped wording of it to score on
            if wording is not None and (role == "test" or validate != AUTO_VALIDATION):
                raise
    result = compare(session, target, {str(r): load_run_prompt(r, session) for r in runs}, wordings=wordings)
    result["provenance"] = session.provenance()
    return result


def robustness(run_dir: str | Path, questionnaire: str | Path | None = None, device: str = "cpu",
               dtype: str = "float32", backend: str | None = None, backend_args: dict | None = None) -> dict:
    """The aligned profile and loss of a run's soft prompt on its training survey, with each option order alone,
    and (if given) on another questionnaire file, all under the run's own constants (and in the run's backend
    unless ``backend`` is given).

    Returns ``{"country", "loss_dimensions", "constants", "conditions": [{"condition", "questionnaire", "order",
    "loss", "indices", "diagnostics"}]}``; the first condition is the training one.
    """
    from . import constants as consts

    run_dir = Path(run_dir)
    run, config = load_run(run_dir)
    train = config.measure.updated(device=device, dtype=dtype, backend=backend, backend_args=backend_args)
    values = run["constants"]["values"]  # one per dimension of the run's questionnaire, which any other must share
    fixed = consts.Constants(np.array(list(values.values()), dtype=float), run["constants"]["kind"],
                             {"from_run": str(run_dir)}, tuple(values))
    country = targets_for(config.measure.questionnaire).lookup(config.country)
    conditions = [("training", train)]
    for order in ("forward", "reverse"):
        if train.order != order:
            conditions.append((f"{order} order only", replace(train, order=order)))
    if questionnaire is not None:
        conditions.append((f"questionnaire {Path(questionnaire).name}", replace(train, questionnaire=str(questionnaire))))
    backend, out = None, []
    for name, cfg in conditions:
        session = Session(cfg, constants=fixed, backend=backend)
        backend = session.backend  # loaded once, measured under every condition
        prompt, style = load_run_prompt(run_dir, session)
        rec = session.measure(country, style, prompt)
        plain = session.measure(country, style)
        out.append({"condition": name, "questionnaire": session.questionnaire.source, "order": cfg.order,
                    "loss": rec["loss"], "plain_loss": plain["loss"],
                    "indices": {d: v["model"] for d, v in rec["indices"].items()}, "diagnostics": rec["diagnostics"]})
    return {"country": country.to_dict(), "run": str(run_dir), "prompt": style,
            "loss_dimensions": rec["loss_dimensions"], "constants": fixed.to_dict(), "conditions": out}


def best_baseline(result: dict) -> tuple[str, float]:
    rows = [r for r in result["rows"] if r["method"] in (*BASELINES, "reference mean")]
    best = min(rows, key=lambda r: r["loss"])
    return best["method"], best["loss"]
