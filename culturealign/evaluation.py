"""Evaluating alignment: the paper's comparison of a learned soft prompt against prompting baselines."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .instrument import DIMENSIONS
from .measure import Session, measurement_record
from .runs import load_run
from .softprompt import SoftPrompt
from .targets import CountryTarget

BASELINES = ("naive", "persona", "icl")


def load_run_prompt(run_dir: str | Path, session: Session) -> tuple[SoftPrompt, str]:
    """The soft prompt of a run folder (checked against the model) and the prompt style it was trained with."""
    hidden = session.lm.model.get_input_embeddings().weight.shape[1]
    prompt = SoftPrompt.load(run_dir, expected_hidden_size=hidden)
    return prompt, prompt.metadata.get("prompt", "naive")


def compare(session: Session, country: CountryTarget, soft_prompts: dict[str, SoftPrompt | tuple[SoftPrompt, str]]
            | None = None, methods: tuple[str, ...] = BASELINES) -> dict:
    """Target, the prompting baselines, the reference-mean predictor and each soft prompt, per dimension and loss.

    ``soft_prompts`` maps a label (e.g. the run folder) to a soft prompt and the prompt style it was trained with.
    Returns ``{"country", "loss_dimensions", "constants", "rows": [{"method", "indices": {dim: v}, "loss"}]}``.
    """
    objective = session.objective(country)
    constants = session.constants_for(country)  # an anchor country is left out of its own constants
    rows = [{"method": "target", "indices": {d: country.scores.get(d) for d in DIMENSIONS}, "loss": 0.0}]
    ref = constants.values
    rows.append({"method": "reference mean", "indices": dict(zip(DIMENSIONS, map(float, ref))),
                 "loss": objective.reference_mean_loss()})
    records = {}
    for style in methods:
        records[style] = measurement_record(session.questionnaire, objective, session.answers(style, country), style)
    for label, item in (soft_prompts or {}).items():
        prompt, style = item if isinstance(item, tuple) else (item, item.metadata.get("prompt", "naive"))
        answers = session.answers(style, country, prompt.embeddings.unsqueeze(0), prompt.placement)
        records[label] = measurement_record(session.questionnaire, objective, answers, style)
    for label, rec in records.items():
        rows.append({"method": label, "indices": {d: rec["indices"][d]["model"] for d in DIMENSIONS},
                     "loss": rec["loss"], "diagnostics": rec["diagnostics"]})
    return {"country": country.to_dict(), "loss_dimensions": objective.dimensions,
            "constants": constants.to_dict(), "rows": rows}


def robustness(run_dir: str | Path, questionnaire: str | Path | None = None, device: str = "cpu",
               dtype: str = "float32") -> dict:
    """The aligned profile and loss of a run's soft prompt on its training survey, with each option order alone,
    and (if given) on another questionnaire file, all under the run's own constants.

    Returns ``{"country", "loss_dimensions", "constants", "conditions": [{"condition", "questionnaire", "order",
    "loss", "indices", "diagnostics"}]}``; the first condition is the training one.
    """
    from dataclasses import replace

    from . import constants as consts
    from .targets import lookup

    run_dir = Path(run_dir)
    run, config = load_run(run_dir)
    train = replace(config.measure, device=device, dtype=dtype)
    fixed = consts.Constants(np.array([run["constants"]["values"][d] for d in DIMENSIONS], dtype=float),
                             run["constants"]["kind"], {"from_run": str(run_dir)})
    country = lookup(config.country)
    conditions = [("training", train)]
    for order in ("forward", "reverse"):
        if train.order != order:
            conditions.append((f"{order} order only", replace(train, order=order)))
    if questionnaire is not None:
        conditions.append((f"questionnaire {Path(questionnaire).name}", replace(train, questionnaire=str(questionnaire))))
    lm, out = None, []
    for name, cfg in conditions:
        session = Session(cfg, lm=lm, constants=fixed)
        lm = session.lm
        prompt, style = load_run_prompt(run_dir, session)
        rec = session.measure(country, style, prompt.embeddings.unsqueeze(0), prompt.placement)
        plain = session.measure(country, style)
        out.append({"condition": name, "questionnaire": session.questionnaire.source, "order": cfg.order,
                    "loss": rec["loss"], "plain_loss": plain["loss"],
                    "indices": {d: rec["indices"][d]["model"] for d in DIMENSIONS}, "diagnostics": rec["diagnostics"]})
    return {"country": country.to_dict(), "run": str(run_dir), "prompt": style,
            "loss_dimensions": rec["loss_dimensions"], "constants": fixed.to_dict(), "conditions": out}


def best_baseline(result: dict) -> tuple[str, float]:
    rows = [r for r in result["rows"] if r["method"] in (*BASELINES, "reference mean")]
    best = min(rows, key=lambda r: r["loss"])
    return best["method"], best["loss"]
