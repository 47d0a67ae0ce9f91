"""The paper's main experiment: every method x country x seed, on the VSM loss and on CulturalBench.

``run_experiment`` writes into ``out/``:

- ``experiment.json``: the configuration (countries, seeds, the alignment settings, CulturalBench limit);
- ``runs/<CODE>-seed<k>/``: one alignment run folder per country and seed (resumable, see :mod:`align`);
- ``results.json``: ``{"targets", "rows": [{"country", "method", "seed", "loss", "indices", "culturalbench"}],
  "summary"}``, rewritten atomically after every unit of work, so an interrupted experiment resumes where it stopped.

Methods: ``naive``, ``persona``, ``icl``, ``reference mean`` (raw indices 0: under anchored constants the mean of the
reference countries) and ``soft prompt``. Prompting baselines are deterministic in distribution mode, so they are
measured once per country (seed null); the soft prompt is learned once per seed.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .align import AlignConfig, align
from .culturalbench import culturalbench_metrics, load_culturalbench, score_judgements
from .errors import CultureAlignError
from .evaluation import BASELINES
from .instrument import DIMENSIONS
from .io import atomic_write_json, refuse_overwrite
from .measure import Session, measurement_record
from .prompts import system_message
from .softprompt import SoftPrompt
from .stats import mean_ci, paired_test
from .targets import lookup

METHODS = (*BASELINES, "reference mean", "soft prompt")


@dataclass
class ExperimentConfig:
    countries: list[str]
    seeds: int = 5
    align: AlignConfig = field(default_factory=lambda: AlignConfig(country=""))
    culturalbench_limit: int | None = 20     # questions per country (None: all of them)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentConfig":
        data = dict(data)
        return cls(align=AlignConfig.from_dict(data.pop("align")), **data)


class Experiment:
    def __init__(self, config: ExperimentConfig, out: Path, session: Session | None = None):
        self.config, self.out = config, Path(out)
        self.countries = [lookup(c) for c in config.countries]
        self.session = session or Session(config.align.measure)
        for c in self.countries:
            self.session.objective(c)  # a missing dimension fails before any work
        path = self.out / "results.json"
        self.results = json.loads(path.read_text()) if path.is_file() else {"rows": []}
        self.results["targets"] = {c.name: c.scores for c in self.countries}

    def _done(self, country: str, method: str, seed) -> bool:
        return any(r["country"] == country and r["method"] == method and r["seed"] == seed for r in self.results["rows"])

    def _add(self, row: dict) -> None:
        self.results["rows"].append(row)
        self.results["summary"] = summarise(self.results["rows"])
        atomic_write_json(self.out / "results.json", self.results)

    def _culturalbench(self, country, style: str, soft: SoftPrompt | None) -> dict | None:
        if self.config.culturalbench_limit == 0:
            return None
        try:
            judgements = load_culturalbench(country.name, self.config.culturalbench_limit)
        except CultureAlignError:
            return None  # the benchmark has no questions for this country
        system = system_message(style, country, self.session.questionnaire)
        p_true = score_judgements(self.session.lm, judgements, system, soft, self.session.config.batch_size)
        metrics = culturalbench_metrics(judgements, p_true)
        return {k: metrics[k] for k in ("judgement_accuracy", "question_accuracy", "n_questions")}

    def _record(self, country, method: str, seed, loss: float, indices: dict, bench: dict | None) -> None:
        self._add({"country": country.name, "method": method, "seed": seed, "loss": float(loss),
                   "indices": {d: float(v) for d, v in indices.items()}, "culturalbench": bench})

    def run(self, on_unit=None) -> dict:
        say = on_unit or (lambda msg: None)
        for country in self.countries:
            objective = self.session.objective(country)
            if not self._done(country.name, "reference mean", None):
                self._record(country, "reference mean", None, objective.reference_mean_loss(),
                             dict(zip(DIMENSIONS, self.session.constants.values)), None)
            for style in BASELINES:
                if self._done(country.name, style, None):
                    continue
                say(f"{country.name}: {style}")
                rec = measurement_record(self.session.questionnaire, objective, self.session.answers(style, country), style)
                self._record(country, style, None, rec["loss"], {d: rec["indices"][d]["model"] for d in DIMENSIONS},
                             self._culturalbench(country, style, None))
            for seed in range(self.config.seeds):
                if self._done(country.name, "soft prompt", seed):
                    continue
                run_dir = self.out / "runs" / f"{country.code}-seed{seed}"
                cfg = AlignConfig.from_dict(self.config.align.to_dict())
                cfg.country, cfg.seed = country.name, seed
                say(f"{country.name}: soft prompt, seed {seed}")
                status = json.loads((run_dir / "run.json").read_text())["status"] if (run_dir / "run.json").is_file() else None
                if status != "finished":
                    align(cfg, run_dir, resume=(run_dir / "checkpoint.pkl").is_file(), force=True, session=self.session)
                run = json.loads((run_dir / "run.json").read_text())
                prompt = SoftPrompt.load(run_dir)
                self._record(country, "soft prompt", seed, run["best"]["loss"],
                             {d: v["model"] for d, v in run["best"]["indices"].items()},
                             self._culturalbench(country, cfg.prompt, prompt))
        return self.results


def summarise(rows: list[dict]) -> dict:
    """Mean and 95 % CI of the loss (and CulturalBench question accuracy) per country and method, and a paired
    test of the soft prompt against each baseline over seeds."""
    out: dict = {}
    for country in dict.fromkeys(r["country"] for r in rows):
        per = {}
        for method in METHODS:
            sel = [r for r in rows if r["country"] == country and r["method"] == method]
            if not sel:
                continue
            entry = {"loss": mean_ci([r["loss"] for r in sel])}
            bench = [r["culturalbench"]["question_accuracy"] for r in sel if r.get("culturalbench")]
            if bench:
                entry["culturalbench_question_accuracy"] = mean_ci(bench)
            per[method] = entry
        soft = [r["loss"] for r in rows if r["country"] == country and r["method"] == "soft prompt"]
        tests = {}
        for method in (*BASELINES, "reference mean"):
            base = [r["loss"] for r in rows if r["country"] == country and r["method"] == method]
            if soft and base:
                tests[method] = paired_test(soft, [base[0]] * len(soft))
        out[country] = {"methods": per, "soft_prompt_vs": tests}
    return out


def run_experiment(config: ExperimentConfig, out: str | Path, resume: bool = False, force: bool = False,
                   session: Session | None = None, on_unit=None) -> dict:
    """Run (or resume) an experiment in ``out``; returns the results dict (also in ``out/results.json``)."""
    out = Path(out)
    if resume:
        if not (out / "experiment.json").is_file():
            raise CultureAlignError(f"cannot resume: {out} has no experiment.json")
        config = ExperimentConfig.from_dict(json.loads((out / "experiment.json").read_text())["config"])
    else:
        refuse_overwrite(out, force, what="experiment folder")
        (out / "results.json").unlink(missing_ok=True)
        shutil.rmtree(out / "runs", ignore_errors=True)  # --force: runs of an earlier experiment are not reused
    started = time.time()
    atomic_write_json(out / "experiment.json", {"config": config.to_dict(), "countries": config.countries,
                                                "seeds": list(range(config.seeds))})
    experiment = Experiment(config, out, session)
    results = experiment.run(on_unit)
    results["wall_time_s"] = results.get("wall_time_s", 0) + (time.time() - started)
    results["provenance"] = experiment.session.provenance()
    atomic_write_json(out / "results.json", results)
    return results
