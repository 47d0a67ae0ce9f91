"""Aligning a model to a country: a soft prompt optimised against the L1 objective.

Two kinds of optimiser share one run folder and one loop:

- black-box (``cma``, ``de``, ``random``; nevergrad ask/tell): a population of candidates per generation, each scored
  in one batched forward pass; works with any backend that scores soft prompts;
- gradient (``adam``): white-box, the soft prompt's gradient through the model (:mod:`culturealign.gradient`), one
  step per forward + backward pass over every survey row.

The loss is ``config.objective`` over every training wording and option order (``per-order``: each block scored on
its own, :meth:`~culturealign.objective.Objective.survey_loss`). A black-box run hands each population's soft
prompts to an *evaluator*, ``evaluator(prompts (P, n_tokens, hidden)) -> expected answers (P, n_wordings, n_orders,
n_items)``: :class:`LocalEvaluator` (the default) is one batched pass on this process's model;
:class:`SplitEvaluator` splits the population over the workers of an executor (:mod:`culturealign.executors`, e.g.
Ray actors, one per GPU). The loss, the optimiser, checkpoints and the run folder stay with the run.

:func:`align` runs (or resumes) the loop and writes a run folder:

- ``run.json``: configuration, seed, model, library versions, constants, target, the best candidate's profile and
  loss per dimension, evaluations used, wall time, status (``running``, ``interrupted``, ``finished``);
- ``history.csv``: one row per generation or step (evaluations, forward-pass equivalents, wall time, the
  objective's loss and the pooled loss of this step's candidate, its validation loss where validated, the selected
  prompt's losses and indices);
- the selected soft prompt (see :mod:`culturealign.softprompt`), rewritten whenever it changes: the one best on the
  validation wording (every ``validate_every`` steps), or without validation the one best on training;
- ``checkpoint.safetensors``: the state after the last complete generation or step, written atomically. It holds
  no code (no pickle): the run state as JSON in the header, and for ``adam`` the prompt and Adam's moments as
  tensors. A black-box optimiser is rebuilt by replaying its recorded generations, which gives the same state.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .backends import get_backend
from .backends.base import require_gradients
from .config import AUTO_VALIDATION, GRADIENT_OPTIMIZERS, VALIDATION_WORDING, AlignConfig, MeasureConfig
from .errors import ConfigError, CultureAlignError
from .executors import worker_context
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text, refuse_overwrite
from .session import Session
from .optimizers import AskTellOptimizer
from .softprompt import (PEFT_FILES, SOFT_PROMPT_FILE, SOFT_PROMPT_JSON, PromptSpace, SoftPrompt,
                         embedding_scale, initial_embeddings)
from .targets import targets_for

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "culturealign-checkpoint/2"
RUN_FILES = (CHECKPOINT, "history.csv", "run.json", SOFT_PROMPT_FILE, SOFT_PROMPT_JSON, *PEFT_FILES)


@dataclass
class AlignState:
    """What a run has done so far (JSON-ready; tensors of gradient runs live beside it in the checkpoint)."""

    generation: int = 0                # generations (black-box) or steps (gradient) done
    evaluations: int = 0               # candidate evaluations (black-box) or gradient steps
    cost: float = 0.0                  # forward-pass equivalents used
    best_loss: float = float("inf")   # the selected prompt's training loss (the objective's)
    best_indices: list[float] | None = None
    best_validation_loss: float = float("inf")   # the selected prompt's validation loss (with validation on)
    best_generation: int = 0           # the step (generation) whose candidate is the selected prompt
    best_z: list[float] | None = None  # black-box: the best search vector
    stale: int = 0                     # generations since the best improved
    told: list[list[float]] = field(default_factory=list)  # black-box: the losses told, replayed on resume
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> "AlignState":
        try:
            state = cls(**data)
            state.best_loss, state.best_validation_loss = float(state.best_loss), float(state.best_validation_loss)
            if not all(isinstance(x, int) for x in (state.generation, state.evaluations, state.stale)):
                raise TypeError("generation, evaluations and stale must be integers")
            if not isinstance(state.history, list) or not isinstance(state.told, list):
                raise TypeError("history and told must be lists")
        except (TypeError, ValueError) as exc:
            raise CultureAlignError(f"checkpoint state is not valid ({exc})") from None
        return state


# ---- evaluators: where a population is scored ---------------------------------------------------------------------
class Evaluator(Protocol):
    """What scores a population: soft prompts ``(P, n_tokens, hidden)`` -> expected answers ``(P, n_wordings,
    n_orders, n_items)`` (1..5), and a JSON-ready description for run.json."""

    def __call__(self, prompts: torch.Tensor) -> np.ndarray: ...

    def describe(self) -> dict: ...


class LocalEvaluator:
    """Expected answers ``(P, n_wordings, n_orders, n_items)`` of soft prompts ``(P, n_tokens, hidden)``: one batched
    call per wording on this process's model (the ``surveys``', or one ``survey``'s), placed as ``placement`` says."""

    def __init__(self, surveys, placement: str):
        self.surveys, self.placement = surveys if isinstance(surveys, (list, tuple)) else [surveys], placement

    def __call__(self, prompts: torch.Tensor) -> np.ndarray:
        return np.stack([s.answer(prompts, self.placement).expected_by_order for s in self.surveys], axis=1)

    def describe(self) -> dict:
        return {"kind": "local"}


class SplitEvaluator:
    """Expected answers ``(P, 1, n_orders, n_items)`` of soft prompts ``(P, n_tokens, hidden)``, the population split into contiguous
    chunks, one per worker of ``executor`` (each worker's context is a Session of ``config.measure``: its model,
    loaded once), each chunk scored in one batched call there, the answers put back in population order.

    ``executor``: ``workers``, ``submit(fn, *args)`` and ``describe()``, as :class:`~culturealign.executors.
    LocalExecutor` and :class:`~culturealign.executors.RayExecutor` have. The workers return answers, not losses:
    the run's objective (and its constants) stays in one place. A chunk is a pure call, so a worker that dies and
    is restarted (Ray's ``max_task_retries``) scores it again to the same answers.

    >>> from culturealign.backends.hf import HFBackend
    >>> from culturealign.executors import LocalExecutor
    >>> from culturealign.models import LoadedModel
    >>> tok = make_tokenizer(); backend = HFBackend(LoadedModel(make_model(tok), tok, "tiny", "tiny"))
    >>> config = AlignConfig(country="CN", optimizer="cma", measure=MeasureConfig(constants="zero", order="forward"))
    >>> evaluator = SplitEvaluator(LocalExecutor(context=Session(config.measure, backend=backend)), config)
    >>> evaluator(torch.zeros(3, 2, backend.hidden_size)).shape  # (P, n_tokens, hidden) -> (P, wordings, orders, items)
    (3, 1, 1, 24)
    >>> evaluator.describe()
    {'kind': 'local'}
    """

    def __init__(self, executor, config: AlignConfig):
        self.executor = executor
        self.task = (config.measure, config.prompt, config.country, config.soft.placement)

    def __call__(self, prompts: torch.Tensor) -> np.ndarray:
        chunks = torch.tensor_split(prompts.detach().cpu(), min(self.executor.workers, len(prompts)))
        futures = [self.executor.submit(answer_on_worker, *self.task, chunk) for chunk in chunks]
        return np.concatenate([f.result() for f in futures])

    def describe(self) -> dict:
        return self.executor.describe()


def answer_on_worker(measure: MeasureConfig, style: str, country: str, placement: str,
                     prompts: torch.Tensor) -> np.ndarray:
    """Runs on a worker: expected answers ``(P, 1, n_orders, n_items)`` of ``prompts`` on the worker's model, ``country`` looked
    up in its questionnaire's targets (the Session caches the survey, so it is built on the first chunk only)."""
    session = worker_context()
    if not isinstance(session, Session) or session.config != measure:
        raise CultureAlignError("the executor's workers do not hold a Session of this run's measurement settings: "
                                "build the executor with functools.partial(Session, config.measure)")
    return LocalEvaluator(session.survey(style, session.targets.lookup(country)), placement)(prompts)


def check_executor(config: AlignConfig, executor: str) -> None:
    """A gradient run cannot be split over workers (one backward pass through one model), nor yet a run on several
    wordings (the workers hold one questionnaire): a clear error, before any worker starts."""
    if config.wordings:
        raise CultureAlignError(f"--executor {executor} scores one wording: train on several wordings (--questionnaire "
                                "more than once) with --executor local")
    if config.gradient:
        raise CultureAlignError(f"--optimizer {config.optimizer} takes gradients through one model, so its steps "
                                f"cannot be split over --executor {executor}: use --executor local, or a black-box "
                                "optimiser (--optimizer cma, de or random) to split its populations")


class Alignment:
    """One alignment run in ``out_dir``: set up from a config (or a checkpoint) and stepped one generation (or
    gradient step) at a time with :meth:`step`. Use :func:`make_alignment` to get the right kind.

    ``evaluator`` scores each population (default: :class:`LocalEvaluator` on ``session``'s model)."""

    kind = "black-box"

    def __init__(self, config: AlignConfig, out_dir: str | Path, session: Session | None = None,
                 evaluator: Evaluator | None = None):
        self.config, self.out = config, Path(out_dir)
        self.country = targets_for(config.measure.questionnaire).lookup(config.country)  # before a model loads
        self.session = session or Session(config.measure)
        self.session.resolve_constants()
        self.dimensions = self.session.questionnaire.dimensions
        self.objective = self.session.objective(self.country)
        # every training wording shares the model and the first wording's constants (one scale for all of them)
        self.wordings = [self.session, *(self.session.with_questionnaire(w) for w in config.wordings)]
        self.surveys = [w.survey(config.prompt, self.country) for w in self.wordings]
        self.survey = self.surveys[0]
        self.evaluator = evaluator or LocalEvaluator(self.surveys, config.soft.placement)
        self.validation = validation_session(config, self.session, self.wordings)
        if self.validation is not None:
            self.validation_objective = self.validation.objective(self.country)
            self.validation_evaluator = LocalEvaluator(self.validation.survey(config.prompt, self.country),
                                                       config.soft.placement)
        backend = self.session.backend
        self.p0 = initial_embeddings(config.soft, backend, backend.tokenizer, self.country.name, config.seed)
        self.sigma = embedding_scale(backend)
        self.state = AlignState()
        self._setup()

    # ---- black-box: one generation ----------------------------------------------------------------------------------
    def _setup(self) -> None:
        self.space = PromptSpace(self.p0, self.sigma, self.config.soft, self.config.seed)
        self.optimizer = AskTellOptimizer(self.config.optimizer, self.space.dim, self.config.popsize,
                                          self.config.budget, self.config.seed)

    @property
    def total(self) -> int:
        """Units of work in the whole run (candidate evaluations, or gradient steps)."""
        return self.config.budget

    def losses(self, block_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The objective's losses ``(P,)``, the pooled losses ``(P,)`` and the pooled indices ``(P, n_dimensions)``
        of every block's indices ``(P, n_wordings, n_orders, n_dimensions)``."""
        return (self.objective.survey_loss_of_indices(block_indices, self.config.objective),
                self.objective.survey_loss_of_indices(block_indices, "pooled"),
                np.nanmean(block_indices, axis=(1, 2)))

    def evaluate(self, zs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`losses` of a population of search vectors ``(P, dim)``."""
        expected = self.evaluator(self.space(zs))              # (P, n_wordings, n_orders, n_items)
        return self.losses(self.objective.indices(expected.reshape(-1, expected.shape[-1])).reshape(
            *expected.shape[:3], -1))

    def step(self) -> dict:
        zs = self.optimizer.ask()
        losses, pooled, indices = self.evaluate(zs)
        self.optimizer.tell(zs, losses)
        self.state.told.append([float(x) for x in losses])
        best = int(np.argmin(losses))
        return self._record(len(zs), float(len(zs)), float(losses[best]), indices[best], zs[best],
                            pooled_loss=float(pooled[best]), median_loss=float(np.median(losses)))

    def validation_loss(self, z) -> float:
        """The per-order loss of candidate ``z`` on the validation wording (each asked order scored on its own)."""
        expected = self.validation_evaluator(self._embeddings_of(z)[None])
        return float(self.validation_objective.survey_loss(expected, "per-order")[0])

    def _embeddings_of(self, z) -> torch.Tensor:
        return self.space(np.asarray(z, dtype=float)[None])[0]

    def _validation_due(self) -> bool:
        """Validate the first candidate (the start's neighbourhood), every ``validate_every``-th after it and the last."""
        return (self.state.generation - 1) % self.config.validate_every == 0 or self.budget_spent

    def _record(self, evaluations: int, cost: float, loss: float, indices: np.ndarray, z, **extra) -> dict:
        st = self.state
        st.generation += 1
        st.evaluations += evaluations
        st.cost += cost
        validation = None
        if self.validation is None:  # the prompt best on training is kept
            better = loss < st.best_loss - 1e-9
        elif self._validation_due():  # the prompt best on the validation wording is kept
            validation = self.validation_loss(z)
            better = validation < st.best_validation_loss - 1e-9
        else:
            better = None  # not a validation point: neither better nor stale
        if better:
            st.best_loss, st.best_indices, st.stale, st.best_generation = loss, [float(v) for v in indices], 0, st.generation
            if validation is not None:
                st.best_validation_loss = validation
            self._keep_best(z)
        elif better is not None:
            st.stale += 1
        row = {"generation": st.generation, "evaluations": st.evaluations, "forward_equivalents": st.cost,
               "wall_s": 0.0, "loss": loss, **extra, "validation_loss": "" if validation is None else validation,
               "best_loss": st.best_loss,
               "best_validation_loss": "" if self.validation is None else st.best_validation_loss,
               "best_generation": st.best_generation,
               **{f"best_{d}": float(v) for d, v in zip(self.dimensions, st.best_indices or [math.nan] * len(self.dimensions))}}
        st.history.append(row)
        return row

    def _keep_best(self, z) -> None:
        self.state.best_z = [float(v) for v in z]

    @property
    def budget_spent(self) -> bool:
        return self.optimizer.done

    @property
    def patience(self) -> int | None:
        """The patience in force (``auto`` resolved against whether this run validates)."""
        return self.config.stop_after(self.validation is not None)

    @property
    def finished(self) -> bool:
        return self.budget_spent or (self.patience is not None and self.state.stale >= self.patience)

    # ---- persistence ------------------------------------------------------------------------------------------------
    def _tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Black-box: rebuild the optimiser by replaying every recorded generation (ask is deterministic given
        the seed and the losses told before it)."""
        for losses in self.state.told:
            zs = self.optimizer.ask()
            if len(zs) != len(losses):
                raise CultureAlignError("checkpoint does not match this configuration (population sizes differ)")
            self.optimizer.tell(zs, np.asarray(losses))

    def checkpoint(self) -> None:
        meta = {"format": CHECKPOINT_FORMAT, "kind": self.kind, "config": json.dumps(self.config.to_dict()),
                "state": json.dumps(asdict(self.state))}
        atomic_write_bytes(self.out / CHECKPOINT, save(self._tensors(), metadata=meta))
        self._write_history()

    def restore(self) -> None:
        _, state, tensors = read_checkpoint(self.out)
        self.state = AlignState.from_dict(state)
        self._load_tensors(tensors)

    def best_embeddings(self) -> torch.Tensor:
        return self.space(np.asarray(self.state.best_z))[0]

    def best_prompt(self) -> SoftPrompt:
        return SoftPrompt(self.best_embeddings(), self.config.soft.placement, self.provenance())

    def provenance(self) -> dict:
        backend = self.session.backend
        return {"country": self.country.name, "target": {d: self.country.scores.get(d) for d in self.dimensions},
                "constants": self.session.constants_for(self.country).to_dict()["values"], "loss": self.state.best_loss,
                "loss_dimensions": self.objective.dimensions, "objective": self.config.objective,
                "validation_loss": None if self.validation is None else self.state.best_validation_loss,
                "seed": self.config.seed, "model": backend.model_id,
                "model_path": backend.provenance()["path"], "prompt": self.config.prompt, "n_tokens": self.config.soft.n_tokens,
                "optimizer": self.config.optimizer}

    def save_best(self) -> None:
        if self.state.best_indices is not None:
            self.best_prompt().save(self.out, base_model=self.session.backend.provenance()["path"])

    def _write_history(self) -> None:
        if not self.state.history:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.state.history[0]))
        writer.writeheader()
        writer.writerows(self.state.history)
        atomic_write_text(self.out / "history.csv", buf.getvalue())

    def write_run(self, status: str) -> dict:
        st = self.state
        best = None
        if st.best_indices is not None:
            best = {d: {"model": float(v), "target": self.country.scores.get(d),
                        "abs_diff": None if d not in self.country.scores else float(abs(v - self.country.scores[d]))}
                    for d, v in zip(self.dimensions, st.best_indices)}
        # why a finished run ended: its whole budget, or the patience (validations without a new best)
        stopped = None if status != "finished" else "budget" if self.budget_spent else "patience"
        record = {"status": status, "stopped": stopped, "patience": self.patience,
                  "config": self.config.to_dict(), "seed": self.config.seed,
                  "country": self.country.to_dict(), "loss_dimensions": self.objective.dimensions,
                  "constants": self.session.constants_for(self.country).to_dict(),
                  "best": {"loss": st.best_loss, "objective": self.config.objective, "generation": st.best_generation,
                           "indices": best},
                  "wordings": {"training": [w.questionnaire.source for w in self.wordings],
                               "validation": None if self.validation is None else {
                                   "questionnaire": self.validation.questionnaire.source,
                                   "orders": self.validation.survey(self.config.prompt, self.country).orders,
                                   "every": self.config.validate_every, "objective": "per-order",
                                   "best_loss": st.best_validation_loss if st.best_indices else None}},
                  "optimizer_kind": self.kind, "executor": self.evaluator.describe(),
                  "evaluations": st.evaluations, "generations": st.generation,
                  "forward_equivalents": st.cost, "search_dim": self.search_dim, "wall_time_s": st.elapsed,
                  "reference_mean_loss": self.objective.reference_mean_loss(),
                  **{k: v for k, v in self.session.provenance().items() if k != "config"}}
        atomic_write_json(self.out / "run.json", record)
        return record

    @property
    def search_dim(self) -> int:
        return self.space.dim


class BlockSampler:
    """The (wording, order) blocks of one stochastic gradient step (``AlignConfig.rows_per_step``).

    A step takes ``rows_per_step / n_items`` whole blocks: the L1 loss of a subset of items is not an estimate of
    anything (every index needs all its items), but a block's per-order loss is one term of the per-order
    objective. Blocks are drawn without replacement in epochs (each block once per epoch), the orders interleaved so
    that consecutive steps alternate them and a step of a multiple of ``n_orders`` blocks holds each order equally.
    Every block has the same chance k / B of being in any step's sample, so the mean of the sampled blocks'
    losses is an unbiased estimate of the objective. Deterministic in (seed, step): a resumed run draws the same
    blocks, with no state to save.

    >>> sampler = BlockSampler(n_wordings=3, n_orders=2, n_items=24, rows_per_step=48, seed=0)
    >>> [sampler.blocks(step) for step in range(3)]   # (wording, order): one forward, one reverse a step
    [[(0, 0), (1, 1)], [(1, 0), (2, 1)], [(0, 1), (2, 0)]]
    """

    def __init__(self, n_wordings: int, n_orders: int, n_items: int, rows_per_step: int, seed: int):
        self.n_wordings, self.n_orders, self.seed = n_wordings, n_orders, seed
        n_blocks = n_wordings * n_orders
        fits = [k * n_items for k in range(1, n_blocks + 1) if n_blocks % k == 0]
        if rows_per_step not in fits:
            raise ConfigError(
                f"--rows-per-step {rows_per_step} cannot cover every dimension evenly: a step takes whole (wording, "
                f"order) blocks of {n_items} rows (each index needs all its items), and the {n_blocks} blocks must "
                f"split evenly over the steps; use one of {', '.join(map(str, fits))}", "AlignConfig.rows_per_step")
        self.k = rows_per_step // n_items
        self.per_epoch = n_blocks // self.k

    def blocks(self, step: int) -> list[tuple[int, int]]:
        """The sorted ``(wording, order)`` positions that step ``step`` (0-based) runs."""
        epoch, j = divmod(step, self.per_epoch)
        rng = np.random.default_rng([self.seed, 104729, epoch])
        wordings = [rng.permutation(self.n_wordings) for _ in range(self.n_orders)]   # per order
        sequence = [(int(wordings[o][w]), int(o)) for w in range(self.n_wordings)
                    for o in rng.permutation(self.n_orders)]
        return sorted(sequence[j * self.k:(j + 1) * self.k])


class GradientAlignment(Alignment):
    """White-box alignment: Adam on the soft prompt itself (an fp32 master copy, whatever the model's dtype),
    with the gradient of the survey loss through the frozen model. One step = one forward + backward pass over
    every survey row (every wording, both option orders), or over the blocks a :class:`BlockSampler` draws
    (``rows_per_step``); ``evaluations`` counts steps."""

    kind = "gradient"

    def _setup(self) -> None:
        from .gradient import SurveyGradient, alignment_loss

        if self.config.measure.answer_mode != "distribution":
            raise CultureAlignError("gradient alignment needs answer distributions: sample mode (generated text) is "
                                    "not differentiable; use a black-box optimiser (--optimizer cma, de or random)")
        self.prompt = self.p0.clone().float().unsqueeze(0).requires_grad_(True)   # (1, n_tokens, hidden)
        self.adam = torch.optim.Adam([self.prompt], lr=self.config.lr)
        self.grads = [SurveyGradient(survey, self.objective.constants, self.config.soft.placement,
                                     self.config.checkpointing) for survey in self.surveys]
        self.grad = self.grads[0]
        self.sampler = None if self.config.rows_per_step is None else BlockSampler(
            len(self.grads), len(self.grad.orders), self.grad.n_items, self.config.rows_per_step, self.config.seed)
        # the surrogate loss of one wording's blocks, weighted by their share of the step's blocks
        self.loss_for = lambda weight: alignment_loss(
            self.objective.target_vector, self.objective.dimensions, self.config.loss, self.config.huber_delta,
            self.dimensions, self.config.objective, weight=weight)
        self.best = self.p0.clone().float()

    @property
    def total(self) -> int:
        return self.config.steps

    def learning_rate(self, step: int) -> float:
        """The schedule at step ``step`` (0-based): ``constant``; ``cosine`` from ``lr`` down to ``lr / 10`` over the
        run; ``warmup``: linear from ``lr / 10`` to ``lr`` over the first tenth of the steps, then that cosine over
        the rest."""
        lr, steps = self.config.lr, self.config.steps
        if self.config.schedule == "constant" or steps <= 1:
            return lr
        warm = steps // 10 if self.config.schedule == "warmup" else 0   # under 10 steps: no warm-up
        if step < warm:
            return lr * (0.1 + 0.9 * step / warm)
        frac = min(1.0, (step - warm) / max(1, steps - 1 - warm))
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    def step(self) -> dict:
        lr = self.learning_rate(self.state.generation)
        for group in self.adam.param_groups:
            group["lr"] = lr
        self.adam.zero_grad(set_to_none=True)
        current = self.prompt.detach()[0].clone()
        n_orders = len(self.grad.orders)
        chosen = ([(w, o) for w in range(len(self.grads)) for o in range(n_orders)] if self.sampler is None
                  else self.sampler.blocks(self.state.generation))
        block_indices = np.full((1, len(self.grads), n_orders, len(self.dimensions)), np.nan)
        cost = 0.0
        for w, grad in enumerate(self.grads):
            orders = [o for ww, o in chosen if ww == w]
            if not orders:
                continue
            # each block's loss weighs 1 / (blocks in the step): the wordings (and sampled blocks) average
            block_indices[:, w, orders] = grad.backward(self.prompt, self.loss_for(len(orders) / len(chosen)), orders)
            cost += grad.step_cost * len(orders) / n_orders
        losses, pooled, indices = self.losses(block_indices)    # always the true L1, whatever the surrogate
        grad_norm = float(self.prompt.grad.norm())       # recorded before clipping
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([self.prompt], self.config.max_grad_norm)
        self.adam.step()
        return self._record(1, cost, float(losses[0]), indices[0], current, pooled_loss=float(pooled[0]), lr=lr,
                            grad_norm=grad_norm, rows=len(chosen) * self.grad.n_items)

    def _embeddings_of(self, z) -> torch.Tensor:
        return z

    def _keep_best(self, embeddings: torch.Tensor) -> None:
        self.best = embeddings

    @property
    def budget_spent(self) -> bool:
        return self.state.generation >= self.config.steps

    def _tensors(self) -> dict[str, torch.Tensor]:
        adam = self.adam.state.get(self.prompt, {})
        tensors = {"prompt": self.prompt.detach(), "best": self.best}
        tensors.update({f"adam.{k}": v for k, v in adam.items() if isinstance(v, torch.Tensor)})
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        try:
            with torch.no_grad():
                self.prompt.copy_(_checked(tensors, "prompt", self.prompt.shape))
            self.best = _checked(tensors, "best", self.best.shape).clone()
            moments = {k[len("adam."):]: v for k, v in tensors.items() if k.startswith("adam.")}
            if moments:
                if set(moments) != {"step", "exp_avg", "exp_avg_sq"}:
                    raise CultureAlignError(f"checkpoint has unexpected Adam state {sorted(moments)}")
                for name in ("exp_avg", "exp_avg_sq"):
                    _checked(moments, name, self.prompt.shape)
                self.adam.state[self.prompt] = {k: v.clone() for k, v in moments.items()}
        except RuntimeError as exc:
            raise CultureAlignError(f"checkpoint tensors do not fit this run ({exc})") from None

    def best_embeddings(self) -> torch.Tensor:
        return self.best

    @property
    def search_dim(self) -> int:
        return self.prompt.numel()


def validation_session(config: AlignConfig, session: Session, training: list[Session]) -> Session | None:
    """The session that scores the validation wording (``config.validate``; ``auto``: the shipped validation wording
    when the instrument is the VSM 2013, else none), sharing the model and constants; None without validation. The
    validation wording must not be one of the training wordings."""
    if config.validate is None:
        return None
    wording = VALIDATION_WORDING if config.validate == AUTO_VALIDATION else config.validate
    try:
        validation = session.with_questionnaire(wording)
    except CultureAlignError:
        if config.validate == AUTO_VALIDATION:  # another instrument: nothing shipped to validate on
            return None
        raise
    if validation.questionnaire.raw == training[0].questionnaire.raw or any(
            validation.questionnaire.raw == t.questionnaire.raw for t in training):
        raise CultureAlignError(f"the validation wording {validation.questionnaire.source} is one of the training "
                                "wordings: validate on a wording the prompt is not trained on (--validate)")
    return validation


def _checked(tensors: dict, name: str, shape) -> torch.Tensor:
    if name not in tensors or tuple(tensors[name].shape) != tuple(shape):
        raise CultureAlignError(f"checkpoint tensor '{name}' is missing or has the wrong shape (need {tuple(shape)})")
    return tensors[name]


def make_alignment(config: AlignConfig, out_dir: str | Path, session: Session | None = None,
                   executor=None) -> Alignment:
    """The alignment run for ``config.optimizer``: :class:`GradientAlignment` for gradient optimisers, after
    checking (before a model loads, when no ``session`` is given) that the backend gives gradients. ``executor``:
    score each population split over its workers (:class:`SplitEvaluator`; black-box optimisers only)."""
    if executor is not None:
        check_executor(config, executor.describe()["kind"])
    if config.optimizer in GRADIENT_OPTIMIZERS:
        require_gradients(session.backend if session else get_backend(config.measure.backend),
                          f"--optimizer {config.optimizer}")
        return GradientAlignment(config, out_dir, session)
    return Alignment(config, out_dir, session, SplitEvaluator(executor, config) if executor is not None else None)


def read_checkpoint(folder: str | Path) -> tuple[AlignConfig, dict, dict[str, torch.Tensor]]:
    """The configuration, state and tensors of a run folder's checkpoint; anything wrong is a clear error."""
    path = Path(folder) / CHECKPOINT
    hint = "start a new run without --resume (or with --force)"
    if not path.is_file():
        raise CultureAlignError(f"cannot resume: {folder} has no {CHECKPOINT}: {hint}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
        config = AlignConfig.from_dict(json.loads(meta["config"]))
        state = json.loads(meta["state"])
        if not isinstance(state, dict):
            raise ValueError("state is not an object")
    except CultureAlignError as exc:
        raise CultureAlignError(f"cannot resume: checkpoint {path} is not valid ({exc}): {hint}") from None
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise CultureAlignError(f"cannot resume: checkpoint {path} is unreadable or corrupt ({exc}): {hint}") from None
    return config, state, tensors


def align(config: AlignConfig | None, out_dir: str | Path, resume: bool = False, force: bool = False,
          session: Session | None = None, on_generation=None, on_start=None, executor=None) -> dict:
    """Run (or resume) an alignment; returns the run record (also in ``out_dir/run.json``).

    ``on_start(alignment)`` is called once set up and ``on_generation(alignment, row)`` after every generation or
    gradient step (the CLI draws its progress there). Ctrl-C leaves a resumable checkpoint and the best prompt so
    far, then re-raises KeyboardInterrupt. ``executor`` (black-box optimisers): score each population split over
    its workers, e.g. a :class:`~culturealign.executors.RayExecutor` built with ``partial(Session, config.measure)``;
    the loop, checkpoints and run folder stay here, so a run resumes with or without it.
    """
    out = Path(out_dir)
    if resume:
        config, _, _ = read_checkpoint(out)
    else:
        if config is None:
            raise CultureAlignError("give an alignment configuration (or resume a run)")
        config.check_applies()
        refuse_overwrite(out, force, what="run folder")
        if force and out.exists():
            for name in RUN_FILES:  # nothing of an earlier run may survive beside the new one
                (out / name).unlink(missing_ok=True)
    run = make_alignment(config, out, session, executor)  # before the folder exists: a setting it refuses leaves nothing
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        run.restore()
    run.write_run("running")
    if on_start:
        on_start(run)
    torch.manual_seed(config.seed)
    started = time.perf_counter() - run.state.elapsed
    try:
        while not run.finished:
            row = run.step()
            run.state.elapsed = row["wall_s"] = time.perf_counter() - started
            improved = run.state.stale == 0
            run.checkpoint()
            if improved:
                run.save_best()
            if on_generation:
                on_generation(run, row)
    except KeyboardInterrupt:
        run.save_best()
        run.write_run("interrupted")
        raise
    run.save_best()
    return run.write_run("finished")
