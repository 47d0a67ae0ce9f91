"""The measurement context: :class:`Session` loads the model (in the configured backend) and the questionnaire
once, resolves the constants when asked (:meth:`Session.resolve_constants`), and builds surveys, objectives and
measurement records (:meth:`Session.measure`) for every command.

>>> from culturealign.backends.hf import HFBackend
>>> from culturealign.models import LoadedModel
>>> from culturealign.targets import lookup
>>> tok = make_tokenizer(); backend = HFBackend(LoadedModel(make_model(tok), tok, "tiny", "tiny"))
>>> session = Session(MeasureConfig(constants="zero", order="forward"), backend=backend)
>>> session.resolve_constants().kind                     # zero or a file: no model needed, already read
'zero'
>>> record = session.measure(lookup("CN"), "naive")      # one country, JSON-ready
>>> sorted(record["indices"]), len(record["items"]), record["constants"]["kind"]
(['IDV', 'IVR', 'LTO', 'MAS', 'PDI', 'UAI'], 24, 'zero')
"""
from __future__ import annotations

import platform
import sys
from dataclasses import replace

import numpy as np
import torch

from . import __version__
from . import constants as consts
from .backends import load_backend
from .backends.base import Backend, as_backend
from .config import ConstantsKind, MeasureConfig
from .errors import CultureAlignError
from .instrument import Questionnaire
from .models import LoadedModel
from .config import parse_dimensions
from .objective import Objective
from .softprompt import SoftPrompt
from .survey import Survey, SurveyAnswers, measurement_record
from .targets import CountryTarget, Targets, targets_for


def library_versions() -> dict[str, str]:
    import nevergrad
    import peft
    import transformers

    return {"culturealign": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "nevergrad": nevergrad.__version__,
            "numpy": np.__version__, "platform": platform.platform()}


class Session:
    """A loaded model (a :class:`~culturealign.backends.base.Backend`) and questionnaire with its constants C:
    the context of every command.

    config: the measurement settings; the model is loaded from ``config.model`` in ``config.backend`` with
    ``config.backend_args`` unless ``backend`` (an already loaded backend, or a ``LoadedModel``, which is wrapped in
    the ``hf`` backend; ``lm`` is the older name of this argument) is given. constants: fixed constants instead of
    resolving ``config.constants`` (for the questionnaire's dimensions).

    Zero constants and a file's are read when the session is made. Anchored ones are fitted (or read from their
    cache) only by :meth:`resolve_constants`, which every command calls once before it measures: until then
    :attr:`constants`, :meth:`constants_for`, :meth:`objective` and :meth:`measure` raise a
    :class:`~culturealign.errors.CultureAlignError` saying so, never run the model themselves.
    """

    def __init__(self, config: MeasureConfig, lm: Backend | LoadedModel | None = None,
                 constants: consts.Constants | None = None, backend: Backend | LoadedModel | None = None):
        self.config = config
        self.questionnaire = Questionnaire.load(config.questionnaire).with_mas_weight(config.mas_weight)
        self.dimensions = parse_dimensions(config.dimensions, self.questionnaire.dimensions)
        if constants is not None and tuple(constants.dimensions) != self.questionnaire.dimensions:
            raise CultureAlignError(f"the constants are for {', '.join(constants.dimensions)}, but questionnaire "
                                    f"{self.questionnaire.source} measures {', '.join(self.questionnaire.dimensions)}")
        config.prompt("naive")  # validates labels and order before the model loads
        if constants is None and config.constants.kind is not ConstantsKind.ANCHORED:
            # zero or a file: no model needed
            constants = consts.resolve(config.constants, self._fit_anchored, self.questionnaire.dimensions)
        self._constants = constants  # None until resolve_constants() fits anchored ones
        given = backend if backend is not None else lm
        self.backend = (as_backend(given) if given is not None else
                        load_backend(config.backend, config.model, config.device, config.dtype, **config.backend_args))
        self._surveys: dict[tuple, Survey] = {}
        self._constants_for: dict[str, consts.Constants] = {}
        self._targets: Targets | None = None

    @property
    def targets(self) -> Targets:
        """The questionnaire's targets (its own, else Hofstede's published scores): ``session.targets.lookup("CN")``."""
        if self._targets is None:
            self._targets = targets_for(self.questionnaire)
        return self._targets

    # ---- building blocks ----------------------------------------------------------------------------------------
    def survey(self, style: str, country: CountryTarget | None) -> Survey:
        key = (style, country.code if country and style != "naive" else None)
        if key not in self._surveys:
            self._surveys[key] = Survey(self.backend, self.questionnaire, self.config.prompt(style),
                                        country if style != "naive" else None, self.config.batch_size,
                                        scoring=self.config.scoring, max_memory_mb=self.config.max_memory_mb)
        return self._surveys[key]

    @property
    def lm(self) -> LoadedModel:
        """The Hugging Face model and tokenizer of an ``hf`` session (for code written before backends)."""
        loaded = getattr(self.backend, "loaded", None)
        if loaded is None:
            raise CultureAlignError(f"this needs the Hugging Face model itself, which the '{self.backend.name}' "
                                    "backend does not hold: use --backend hf")
        return loaded

    def answers(self, style: str, country: CountryTarget | None, soft_prompt: SoftPrompt | None = None
                ) -> SurveyAnswers:
        """The survey's answers under prompt ``style``, with ``soft_prompt`` (placed as it says) or without."""
        survey = self.survey(style, country)
        soft, placement = (soft_prompt.embeddings.unsqueeze(0), soft_prompt.placement) if soft_prompt else (None, "prefix")
        if self.config.answer_mode == "sample":
            return survey.sample(self.config.samples, self.config.seed, soft, placement)
        return survey.answer(soft, placement)

    def with_questionnaire(self, spec: str, order: str | None = None) -> "Session":
        """A session on another wording ``spec`` (a registered name or a file) of this session's instrument, sharing
        its model and its resolved constants (a wording is scored on the same scale as the one the constants were
        fitted on), optionally asked in another ``order``. A questionnaire of another instrument is a clear error."""
        config = replace(self.config, questionnaire=str(spec), order=order or self.config.order)
        questionnaire = Questionnaire.load(config.questionnaire).with_mas_weight(config.mas_weight)
        self.questionnaire.check_same_instrument(questionnaire)
        return Session(config, constants=self.resolve_constants(), backend=self.backend)

    def resolve_constants(self) -> consts.Constants:
        """The constants of the configuration, resolved once (:func:`culturealign.constants.resolve`): for
        ``anchored``, the fit over every reference country, read from the cache or measured now (a persona
        measurement per reference country); later calls return the same object."""
        if self._constants is None:
            self._constants = consts.resolve(self.config.constants, self._fit_anchored, self.questionnaire.dimensions)
        return self._constants

    @property
    def constants(self) -> consts.Constants:
        """The resolved constants (:meth:`resolve_constants`): for ``anchored``, the fit over every reference
        country (a target that is one of them is scored with :meth:`constants_for`, which leaves it out)."""
        if self._constants is None:
            raise CultureAlignError("the anchored constants are not fitted yet: call session.resolve_constants() "
                                    "first (it reads the cached fit, or measures the model with each reference "
                                    "country's persona)")
        return self._constants

    def _fit_anchored(self) -> consts.Constants:
        identity = self.backend.fingerprint()  # the model's path, dtype, device and weights (and the engine's own)
        key = consts.constants_cache_key(identity.pop("model"), self.questionnaire,
                                         {**self.config.prompt("persona").to_dict(),
                                          "answer_mode": self.config.answer_mode,
                                          "samples": self.config.samples, "seed": self.config.seed},
                                         self.config.scoring, dtype=identity.pop("dtype"),
                                         device=identity.pop("device"), weights=identity.pop("weights"))
        return consts.anchored(self._raw_persona_indices, {**key, **identity}, targets=self.targets)

    def constants_for(self, country: CountryTarget) -> consts.Constants:
        """The constants to score ``country`` with: under anchored constants fitted without it when it is one of the
        reference countries (leave-one-out, from the cached fit's raw indices: no new measurement), else the fit
        over every reference. ``to_dict()`` records the reference set used and the country left out."""
        if country.name not in self._constants_for:
            self._constants_for[country.name] = consts.leave_one_out(self.constants, country.name, self.targets)
        return self._constants_for[country.name]

    def _raw_persona_indices(self, country_name: str) -> np.ndarray:
        answers = self.answers("persona", self.targets.lookup(country_name))
        return self.questionnaire.raw_indices(answers.expected[0])

    def objective(self, country: CountryTarget) -> Objective:
        return Objective(self.questionnaire, self.constants_for(country).values, country, self.dimensions)

    def provenance(self) -> dict:
        return {"config": self.config.to_dict(), "model": self.backend.provenance(),
                "questionnaire": self.questionnaire.source, "versions": library_versions(),
                "argv": sys.argv}

    # ---- the measurement record -----------------------------------------------------------------------------------
    def measure(self, country: CountryTarget, style: str, soft_prompt: SoftPrompt | None = None) -> dict:
        """One country's measurement as a JSON-ready dict (schema in docs/commands.md)."""
        objective = self.objective(country)  # fails early on a missing dimension
        answers = self.answers(style, country, soft_prompt)
        return {**measurement_record(self.questionnaire, objective, answers, style),
                "constants": self.constants_for(country).to_dict()}
