"""Measuring a model's cultural profile: the settings, the loaded context, and the result record.

:class:`MeasureConfig` holds every choice that affects a measurement; :class:`Session` loads the model and
questionnaire once and resolves the constants; :meth:`Session.measure` returns one JSON-ready record per country.
"""
from __future__ import annotations

import platform
import sys

import numpy as np
import torch
from scipy import stats

from . import __version__
from . import constants as consts
from .config import MeasureConfig  # noqa: F401  (re-exported: measure.MeasureConfig)
from .errors import CultureAlignError
from .instrument import DIMENSIONS, Questionnaire
from .models import LoadedModel, load_model, weights_fingerprint
from .objective import Objective, parse_dimensions
from .survey import Survey, SurveyAnswers
from .targets import CountryTarget, lookup

ORDER_WARNING_R = 0.3
SPREAD_WARNING = 0.1


def library_versions() -> dict[str, str]:
    import nevergrad
    import peft
    import transformers

    return {"culturealign": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "nevergrad": nevergrad.__version__,
            "numpy": np.__version__, "platform": platform.platform()}


class Session:
    """A loaded model and questionnaire with resolved constants: the context of every command."""

    def __init__(self, config: MeasureConfig, lm: LoadedModel | None = None,
                 constants: consts.Constants | None = None):
        if config.answer_mode not in ("distribution", "sample"):
            raise CultureAlignError("--answer-mode must be 'distribution' or 'sample'")
        self.config = config
        self.dimensions = parse_dimensions(config.dimensions)
        self.questionnaire = Questionnaire.load(config.questionnaire).with_mas_weight(config.mas_weight)
        config.prompt("naive")  # validates labels and order before the model loads
        self.lm = lm or load_model(config.model, config.device, config.dtype)
        self._surveys: dict[tuple, Survey] = {}
        self._constants = constants  # None: resolved from config.constants on first use
        self._constants_for: dict[str, consts.Constants] = {}

    # ---- building blocks ----------------------------------------------------------------------------------------
    def survey(self, style: str, country: CountryTarget | None) -> Survey:
        key = (style, country.code if country and style != "naive" else None)
        if key not in self._surveys:
            self._surveys[key] = Survey(self.lm, self.questionnaire, self.config.prompt(style),
                                        country if style != "naive" else None, self.config.batch_size,
                                        scoring=self.config.scoring, max_memory_mb=self.config.max_memory_mb)
        return self._surveys[key]

    def answers(self, style: str, country: CountryTarget | None, soft_prompt: torch.Tensor | None = None,
                placement: str = "prefix") -> SurveyAnswers:
        survey = self.survey(style, country)
        if self.config.answer_mode == "sample":
            return survey.sample(self.config.samples, self.config.seed, soft_prompt, placement)
        return survey.answer(soft_prompt, placement)

    @property
    def constants(self) -> consts.Constants:
        """The constants of the configuration: for ``anchored``, the fit over every reference country (a target that
        is one of them is scored with :meth:`constants_for`, which leaves it out)."""
        if self._constants is None:
            spec = self.config.constants
            if spec == "zero":
                self._constants = consts.zero()
            elif spec == "anchored":
                param = next(self.lm.model.parameters())
                key = consts.constants_cache_key(self.lm.resolved_path, self.questionnaire,
                                                 {**self.config.prompt("persona").to_dict(),
                                                  "answer_mode": self.config.answer_mode,
                                                  "samples": self.config.samples, "seed": self.config.seed},
                                                 self.config.scoring, dtype=str(param.dtype).replace("torch.", ""),
                                                 device=str(param.device), weights=weights_fingerprint(self.lm.model))
                self._constants = consts.anchored(self._raw_persona_indices, key)
            else:
                self._constants = consts.from_file(spec)
        return self._constants

    def constants_for(self, country: CountryTarget) -> consts.Constants:
        """The constants to score ``country`` with: under anchored constants fitted without it when it is one of the
        reference countries (leave-one-out, from the cached fit's raw indices: no new measurement), else the fit
        over every reference. ``to_dict()`` records the reference set used and the country left out."""
        if country.name not in self._constants_for:
            self._constants_for[country.name] = consts.leave_one_out(self.constants, country.name)
        return self._constants_for[country.name]

    def _raw_persona_indices(self, country_name: str) -> np.ndarray:
        answers = self.answers("persona", lookup(country_name))
        return self.questionnaire.raw_indices(answers.expected[0])

    def objective(self, country: CountryTarget) -> Objective:
        return Objective(self.questionnaire, self.constants_for(country).values, country, self.dimensions)

    def provenance(self) -> dict:
        return {"config": self.config.to_dict(), "model": {"id": self.lm.model_id, "path": self.lm.resolved_path,
                "hidden_size": self.lm.model.get_input_embeddings().weight.shape[1]},
                "questionnaire": self.questionnaire.source, "versions": library_versions(),
                "argv": sys.argv}

    # ---- the measurement record -----------------------------------------------------------------------------------
    def measure(self, country: CountryTarget, style: str, soft_prompt: torch.Tensor | None = None,
                placement: str = "prefix") -> dict:
        """One country's measurement as a JSON-ready dict (schema in the README)."""
        objective = self.objective(country)  # fails early on a missing dimension
        answers = self.answers(style, country, soft_prompt, placement)
        return {**measurement_record(self.questionnaire, objective, answers, style),
                "constants": self.constants_for(country).to_dict()}


def measurement_record(questionnaire: Questionnaire, objective: Objective, answers: SurveyAnswers,
                       style: str) -> dict:
    expected = answers.expected[0]
    indices = objective.indices(expected)[0]
    target = objective.target
    dims = {}
    for d, dim in enumerate(DIMENSIONS):
        t = target.scores.get(dim)
        dims[dim] = {"name": questionnaire.names[dim], "target": t, "model": float(indices[d]),
                     "abs_diff": None if t is None else float(abs(indices[d] - t)),
                     "in_loss": dim in objective.dimensions, "source": target.sources.get(dim)}
    items = []
    by_order = answers.expected_by_order[0]
    for i, item in enumerate(questionnaire.items):
        row = {"item": item.id, "text": item.text, "expected": float(expected[i]),
               "probs": [float(p) for p in answers.probs[0, i]], "mass": _float(answers.mass[0, i])}
        for o, order in enumerate(answers.orders):
            row[f"expected_{order}"] = float(by_order[o, i])
        if answers.unparsed is not None:
            row["unparsed"] = int(answers.unparsed[0, :, i].sum())
        items.append(row)
    return {"country": target.to_dict(), "prompt": style, "loss_dimensions": objective.dimensions,
            "loss": float(objective.loss(expected)[0]), "indices": dims, "items": items,
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
    for dim in DIMENSIONS:
        pairs = [(r["indices"][dim]["model"], r["indices"][dim]["target"]) for r in records
                 if r["indices"][dim]["target"] is not None]
        if len(pairs) < 2:
            out[dim] = {"tau": None, "p_value": None, "n": len(pairs)}
            continue
        res = stats.kendalltau([p[0] for p in pairs], [p[1] for p in pairs])
        out[dim] = {"tau": _float(res.statistic), "p_value": _float(res.pvalue), "n": len(pairs)}
    return out
