"""Aligning a model to a country: a soft prompt optimised by a black-box optimiser against the L1 objective.

:class:`AlignConfig` holds the choices; :func:`align` runs (or resumes) the loop and writes a run folder:

- ``run.json``: configuration, seed, model, library versions, constants, target, the best candidate's profile and
  loss per dimension, evaluations used, wall time, status (``running``, ``interrupted``, ``finished``);
- ``history.csv``: one row per generation (evaluations used, best and median loss, best per-dimension scores);
- the best soft prompt (see :mod:`culturealign.softprompt`), rewritten whenever it improves;
- ``checkpoint.pkl``: the optimiser state after the last complete generation (atomic), for ``--resume``.
"""
from __future__ import annotations

import csv
import io
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import CultureAlignError
from .instrument import DIMENSIONS
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text, refuse_overwrite
from .config import AlignConfig, MeasureConfig, SoftPromptConfig  # noqa: F401  (re-exported)
from .measure import Session
from .optimizers import AskTellOptimizer
from .softprompt import PromptSpace, SoftPrompt, initial_embeddings
from .targets import lookup

CHECKPOINT = "checkpoint.pkl"


@dataclass
class AlignState:
    generation: int = 0
    best_z: np.ndarray | None = None
    best_loss: float = float("inf")
    best_indices: np.ndarray | None = None
    stale: int = 0                     # generations since the best improved
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    optimizer: bytes = b""


class Alignment:
    """One alignment run in ``out_dir``: set up from a config (or a checkpoint) and stepped generation by generation."""

    def __init__(self, config: AlignConfig, out_dir: str | Path, session: Session | None = None):
        self.config, self.out = config, Path(out_dir)
        self.country = lookup(config.country)
        self.session = session or Session(config.measure)
        self.objective = self.session.objective(self.country)
        self.survey = self.session.survey(config.prompt, self.country)
        embedding = self.session.lm.model.get_input_embeddings()
        p0 = initial_embeddings(config.soft, embedding, self.session.lm.tokenizer, self.country.name, config.seed)
        sigma = float(embedding.weight.detach().float().std())
        self.space = PromptSpace(p0, sigma, config.soft, config.seed)
        self.optimizer = AskTellOptimizer(config.optimizer, self.space.dim, config.popsize, config.budget, config.seed)
        self.state = AlignState()

    # ---- one generation ---------------------------------------------------------------------------------------------
    def evaluate(self, zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Losses ``(P,)`` and indices ``(P, 6)`` of a population of search vectors ``(P, dim)``."""
        answers = self.survey.answer(self.space(zs), self.config.soft.placement)
        return self.objective.loss(answers.expected), self.objective.indices(answers.expected)

    def step(self) -> dict:
        zs = self.optimizer.ask()
        losses, indices = self.evaluate(zs)
        self.optimizer.tell(zs, losses)
        st = self.state
        st.generation += 1
        best = int(np.argmin(losses))
        if losses[best] < st.best_loss - 1e-9:
            st.best_loss, st.best_z, st.best_indices, st.stale = float(losses[best]), zs[best].copy(), indices[best], 0
        else:
            st.stale += 1
        row = {"generation": st.generation, "evaluations": self.optimizer.evaluations,
               "best_loss": st.best_loss, "median_loss": float(np.median(losses)), "generation_best": float(losses[best]),
               **{f"best_{d}": float(v) for d, v in zip(DIMENSIONS, st.best_indices)}}
        st.history.append(row)
        return row

    @property
    def finished(self) -> bool:
        patience = self.config.patience
        return self.optimizer.done or (patience is not None and self.state.stale >= patience)

    # ---- persistence ------------------------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        self.state.optimizer = self.optimizer.state_dict()
        buf = io.BytesIO()
        pickle.dump({"config": self.config.to_dict(), "state": self.state}, buf)
        atomic_write_bytes(self.out / CHECKPOINT, buf.getvalue())
        self._write_history()

    def restore(self) -> None:
        path = self.out / CHECKPOINT
        try:
            data = pickle.loads(path.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise CultureAlignError(f"cannot resume: checkpoint {path} is unreadable ({exc})") from None
        self.state = data["state"]
        self.optimizer.load_state_dict(self.state.optimizer)

    def best_prompt(self) -> SoftPrompt:
        emb = self.space(self.state.best_z)[0]
        return SoftPrompt(emb, self.config.soft.placement, self.provenance())

    def provenance(self) -> dict:
        lm = self.session.lm
        return {"country": self.country.name, "target": {d: self.country.scores.get(d) for d in DIMENSIONS},
                "constants": self.session.constants.to_dict()["values"], "loss": self.state.best_loss,
                "loss_dimensions": self.objective.dimensions, "seed": self.config.seed, "model": lm.model_id,
                "model_path": lm.resolved_path, "prompt": self.config.prompt, "n_tokens": self.config.soft.n_tokens}

    def save_best(self) -> None:
        if self.state.best_z is not None:
            self.best_prompt().save(self.out, base_model=self.session.lm.resolved_path)

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
                    for d, v in zip(DIMENSIONS, st.best_indices)}
        record = {"status": status, "config": self.config.to_dict(), "seed": self.config.seed,
                  "country": self.country.to_dict(), "loss_dimensions": self.objective.dimensions,
                  "constants": self.session.constants.to_dict(), "best": {"loss": st.best_loss, "indices": best},
                  "evaluations": self.optimizer.evaluations, "generations": st.generation,
                  "search_dim": self.space.dim, "wall_time_s": st.elapsed,
                  "reference_mean_loss": self.objective.reference_mean_loss(),
                  **{k: v for k, v in self.session.provenance().items() if k != "config"}}
        atomic_write_json(self.out / "run.json", record)
        return record


def align(config: AlignConfig, out_dir: str | Path, resume: bool = False, force: bool = False,
          session: Session | None = None, on_generation=None, on_start=None) -> dict:
    """Run (or resume) an alignment; returns the run record (also in ``out_dir/run.json``).

    ``on_start(alignment)`` is called once set up and ``on_generation(alignment, row)`` after every generation
    (the CLI draws its progress bar there).
    Ctrl-C leaves a resumable checkpoint and the best prompt so far, then re-raises KeyboardInterrupt.
    """
    out = Path(out_dir)
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise CultureAlignError(f"cannot resume: {out} has no {CHECKPOINT} (start a new run without --resume)")
        saved = pickle.loads((out / CHECKPOINT).read_bytes())["config"]
        config = AlignConfig.from_dict(saved)
    else:
        refuse_overwrite(out, force, what="run folder")
        if force and out.exists():
            for name in (CHECKPOINT, "history.csv", "run.json"):
                (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    run = Alignment(config, out, session)
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
            run.state.elapsed = time.perf_counter() - started
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
