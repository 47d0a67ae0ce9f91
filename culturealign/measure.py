"""Measurement records: one country's indices, items and answer-format diagnostics, and Kendall's tau over countries.

:class:`MeasureConfig` (config.py) holds every choice that affects a measurement; :class:`Session` (session.py)
loads the model and questionnaire once and calls :func:`measurement_record`. Both are re-exported here, so
``from culturealign.measure import MeasureConfig, Session`` keeps working.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from pathlib import Path
from typing import Sequence

from .config import MeasureConfig  # noqa: F401  (re-exported: measure.MeasureConfig)
from .errors import CultureAlignError
from .instrument import Questionnaire
from .objective import Objective
from .session import Session, library_versions  # noqa: F401  (re-exported: measure.Session)
from .survey import SurveyAnswers
from .targets import CountryTarget, targets_for

ORDER_WARNING_R = 0.3
SPREAD_WARNING = 0.1


def measure_countries(config: MeasureConfig, countries: Sequence[str | CountryTarget], style: str = "persona",
                      soft_prompt: str | Path | None = None, session: Session | None = None,
                      before_load=None) -> dict:
    """What ``culturealign measure`` prints and writes: every country measured under prompt ``style`` (with the
    soft prompt of a run folder, if given), with provenance, constants and Kendall's tau over the countries.

    The countries and their dimensions are checked before the model loads; ``before_load()`` is called then (the
    CLI refuses an existing output file there). ``session``: an already loaded one (else built from ``config``).
    """
    from .softprompt import load_soft_prompt

    if not countries:
        raise CultureAlignError("give at least one --country (see `culturealign countries`)")
    table = targets_for(config.questionnaire)  # the questionnaire's targets (its own, else Hofstede's)
    targets = [c if isinstance(c, CountryTarget) else table.lookup(c) for c in countries]
    table.check(targets, config.dimensions)
    if before_load:
        before_load()
    session = session or Session(config)
    session.resolve_constants()
    prompt = load_soft_prompt(soft_prompt, session.backend) if soft_prompt else None
    records = [session.measure(t, style, prompt) for t in targets]
    return {"provenance": session.provenance(), "constants": session.constants.to_dict(),
            "soft_prompt": str(soft_prompt) if soft_prompt else None, "results": records,
            "kendall_tau": kendall_tau(records)}


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
               "probs": [float(p) for p in answers.probs[0, i]], "mass": _float(answers.mass[0, i])}
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


def _float(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def diagnostics(answers: SurveyAnswers) -> dict:
    """Answer-format health: item spread, option mass, order consistency, and a plain warning."""
    spread = float(answers.spread[0])
    r = answers.order_correlation
    r = None if r is None else _float(r[0])
    mass = answers.mass[0]
    warnings = []
    if r is not None and (r < ORDER_WARNING_R):
        warnings.append(f"answers follow option position, not content (forward/reverse profile r = {r:.2f}): "
                        "item-level answers and indices reflect the answer format, not the model's values")
    if r is None and len(answers.orders) == 1:
        warnings.append("order consistency not checked: use --order both to detect position-driven answers")
    if spread < SPREAD_WARNING:
        warnings.append(f"answers barely vary across items (SD {spread:.3f} on the 1-5 scale)")
    out = {"item_spread_sd": spread, "mean_option_mass": _float(np.nanmean(mass)) if np.isfinite(mass).any() else None,
           "order_correlation": r, "orders": answers.orders, "warnings": warnings}
    if answers.unparsed is not None:
        out["unparsed_replies"] = int(answers.unparsed.sum())
    return out


def kendall_tau(records: list[dict]) -> dict | None:
    """Per dimension, Kendall's tau between the model's country ranking and the published one (the CAT metric)."""
    if len(records) < 2:
        return None
    out = {}
    for dim in records[0]["indices"]:  # the questionnaire's dimensions
        pairs = [(r["indices"][dim]["model"], r["indices"][dim]["target"]) for r in records
                 if r["indices"][dim]["target"] is not None]
        if len(pairs) < 2:
            out[dim] = {"tau": None, "p_value": None, "n": len(pairs)}
            continue
        res = stats.kendalltau([p[0] for p in pairs], [p[1] for p in pairs])
        out[dim] = {"tau": _float(res.statistic), "p_value": _float(res.pvalue), "n": len(pairs)}
    return out
