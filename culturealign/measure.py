"""The ``measure`` command: every country measured under one prompt, with provenance, and Kendall's tau over them.

:class:`~culturealign.config.MeasureConfig` holds every choice that affects a measurement;
:class:`~culturealign.session.Session` loads the model and questionnaire once; one country's record is
:meth:`Session.measure <culturealign.session.Session.measure>` (built by :func:`culturealign.survey.measurement_record`).
"""
from __future__ import annotations

from scipy import stats

from pathlib import Path
from typing import Sequence

from .config import MeasureConfig
from .errors import CultureAlignError
from .session import Session
from .softprompt import load_soft_prompt
from .survey import finite_or_none
from .targets import CountryTarget, targets_for

def measure_countries(config: MeasureConfig, countries: Sequence[str | CountryTarget], style: str = "persona",
                      soft_prompt: str | Path | None = None, session: Session | None = None,
                      before_load=None) -> dict:
    """What ``culturealign measure`` prints and writes: every country measured under prompt ``style`` (with the
    soft prompt of a run folder, if given), with provenance, constants and Kendall's tau over the countries.

    The countries and their dimensions are checked before the model loads; ``before_load()`` is called then (the
    CLI refuses an existing output file there). ``session``: an already loaded one (else built from ``config``).
    """
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
        out[dim] = {"tau": finite_or_none(res.statistic), "p_value": finite_or_none(res.pvalue), "n": len(pairs)}
    return out
