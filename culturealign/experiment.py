"""The paper's main experiment: every method x country x seed, on the VSM loss and on the evaluations (CulturalBench).

An experiment is a *plan* of units (:func:`plan`), a pure function that runs one unit (:func:`run_unit`) and a
*driver* (:class:`Experiment`) that hands the units to an executor (:mod:`culturealign.executors`: in this process,
or on Ray actors) and is the only writer of ``results.json``. A unit is one (country, method, seed): a baseline
measurement, or one alignment run in its own resumable run folder.

``run_experiment`` writes into ``out/``:

- ``experiment.json``: the configuration (countries, seeds, the alignment settings, the evaluations and their
  limits);
- ``runs/<CODE>-seed<k>/``: one alignment run folder per country and seed (resumable, see :mod:`align`);
- ``results.json``: ``{"targets", "rows": [{"country", "method", "seed", "loss", "indices", <evaluation>: metrics
  or null, ...}], "summary"}`` (e.g. ``"culturalbench": {"judgement_accuracy", "question_accuracy",
  "n_questions"}``), rewritten atomically after every finished unit, rows in plan order whatever order the units finish
  in, so an interrupted experiment resumes where it stopped and gives the same file.

Methods: ``naive``, ``persona``, ``icl``, ``reference mean`` (raw indices 0: under anchored constants the mean of the
reference countries) and ``soft prompt``. Prompting baselines are deterministic in distribution mode, so they are
measured once per country (seed null); the soft prompt is learned once per seed.
"""
from __future__ import annotations

import functools
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .config import AlignConfig
from .align import CHECKPOINT, align
from .comparison import BASELINES
from .config import ConstantsKind
from .errors import CultureAlignError
from .evaluations import (DEFAULT_EVALUATIONS, EVALUATIONS, NotCovered, check_limits, get_evaluation, in_rows,
                          run_evaluation)
from .executors import LocalExecutor, worker_context
from .instrument import Questionnaire
from .io import atomic_write_json, read_json, refuse_overwrite
from .session import Session
from .survey import measurement_record
from .softprompt import SoftPrompt
from .stats import mean_ci, paired_test
from .targets import targets_for

METHODS = (*BASELINES, "reference mean", "soft prompt")
RUN_STATUSES = ("running", "interrupted", "finished")
_POLL_S = 0.05


@dataclass
class ExperimentConfig:
    countries: list[str]
    seeds: int = 5
    align: AlignConfig = field(default_factory=lambda: AlignConfig(country=""))
    #: the evaluations each method is measured on (:mod:`culturealign.evaluations`): name -> items per country
    #: (None: all of them; 0: listed, not run)
    evaluations: dict[str, int | None] = field(default_factory=lambda: dict(DEFAULT_EVALUATIONS))

    def __post_init__(self):
        self.evaluations = check_limits(self.evaluations)

    def to_dict(self) -> dict:
        return {**asdict(self), "align": self.align.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentConfig":
        data = dict(data)
        if "culturalbench_limit" in data:  # an experiment.json from before the evaluations registry
            if "evaluations" in data:
                raise ValueError("both 'evaluations' and the older 'culturalbench_limit'")
            data["evaluations"] = {"culturalbench": data.pop("culturalbench_limit")}
        return cls(align=AlignConfig.from_dict(data.pop("align")), **data)


# ---- the plan ---------------------------------------------------------------------------------------------------
@dataclass
class Unit:
    """One piece of work: a baseline measurement of one country, or one alignment run (``method`` "soft prompt",
    with its full configuration in ``align``). Everything a worker needs besides the loaded model."""

    country: str                          # the country's name (as in results.json)
    method: str                           # one of METHODS
    seed: int | None = None               # soft prompt only
    evaluations: dict[str, int | None] = field(default_factory=dict)  # name -> items per country (0: not run)
    align: AlignConfig | None = None      # soft prompt only: country and seed set

    @property
    def key(self) -> tuple:
        return (self.country, self.method, self.seed)

    def run_dir(self, out: str | Path) -> Path:
        questionnaire = self.align.measure.questionnaire if self.align else None
        code = targets_for(questionnaire).lookup(self.country).code
        return Path(out) / "runs" / f"{code}-seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.country}: {self.method}" + (f", seed {self.seed}" if self.seed is not None else "")


def plan(config: ExperimentConfig) -> list[Unit]:
    """Every unit, in the order of the rows of results.json: per country the reference mean, the prompting
    baselines, then the soft prompt per seed."""
    units = []
    targets = targets_for(config.align.measure.questionnaire)
    for name in config.countries:
        country = targets.lookup(name)
        evals = config.evaluations
        units.append(Unit(country.name, "reference mean", None, dict(evals)))
        units += [Unit(country.name, style, None, dict(evals)) for style in BASELINES]
        for seed in range(config.seeds):
            cfg = AlignConfig.from_dict(config.align.to_dict())
            cfg.country, cfg.seed = country.name, seed
            units.append(Unit(country.name, "soft prompt", seed, dict(evals), cfg))
    return units


# ---- one unit ---------------------------------------------------------------------------------------------------
def run_unit(unit: Unit, session: Session, out: str | Path, on_generation=None) -> dict:
    """Run one unit and return its results.json row. Pure apart from the unit's own run folder (soft prompt units),
    which it resumes from its checkpoint when one is there: a unit run again after a crash continues where it
    stopped, and one whose run finished is only read back."""
    country = session.targets.lookup(unit.country)
    session.resolve_constants()  # anchored: the first unit fits them, the others read its cached fit
    objective = session.objective(country)
    if unit.method == "reference mean":  # a predictor, not a prompt: nothing to evaluate (the same in every order)
        loss = objective.reference_mean_loss()
        return _row(unit, loss, session.constants_for(country).to_dict()["values"], dict.fromkeys(unit.evaluations),
                    per_order_loss=loss)
    if unit.method in BASELINES:
        rec = measurement_record(session.questionnaire, objective, session.answers(unit.method, country), unit.method)
        return _row(unit, rec["loss"], {d: v["model"] for d, v in rec["indices"].items()},
                    _evaluate(session, country.name, unit.method, None, unit.evaluations),
                    per_order_loss=rec["per_order_loss"])
    if unit.method != "soft prompt" or unit.align is None:
        raise CultureAlignError(f"unknown experiment unit {unit}")
    run_dir = unit.run_dir(out)
    run = read_run(run_dir, unit) if (run_dir / "run.json").is_file() else None
    if run is None or run["status"] != "finished":
        align(unit.align, run_dir, resume=(run_dir / CHECKPOINT).is_file(), force=True, session=session,
              on_generation=on_generation)
        run = read_run(run_dir, unit)
    prompt = SoftPrompt.load(run_dir)
    # measured as the baselines are (the pooled loss and the per-order loss of the training wording): the run's own
    # best.loss is its objective's, which under per-order is never below pooled
    rec = measurement_record(session.questionnaire, objective,
                             session.answers(unit.align.prompt, country, prompt), unit.align.prompt)
    return _row(unit, rec["loss"], {d: v["model"] for d, v in rec["indices"].items()},
                _evaluate(session, country.name, unit.align.prompt, prompt, unit.evaluations),
                per_order_loss=rec["per_order_loss"])


def read_run(run_dir: Path, unit: Unit | None = None) -> dict:
    """A run folder's run.json, checked for the keys an experiment reads; a corrupt or outdated one (or one of
    another run) is a clear error."""
    path = run_dir / "run.json"
    hint = f"delete the run folder {run_dir} to run this unit again"
    run = read_json(path, "run record", hint)

    def bad(why: str) -> CultureAlignError:
        return CultureAlignError(f"run record {path} is outdated or corrupt ({why}): {hint}")

    if not isinstance(run, dict) or run.get("status") not in RUN_STATUSES:
        raise bad(f"'status' is not one of {', '.join(RUN_STATUSES)}")
    cfg = run.get("config")
    if not isinstance(cfg, dict):
        raise bad("no 'config'")
    if unit is not None and (cfg.get("country") != unit.country or cfg.get("seed") != unit.seed):
        raise bad(f"it is the run of {cfg.get('country')!r}, seed {cfg.get('seed')!r}, not of {unit}")
    if run["status"] == "finished":
        best = run.get("best")
        if not isinstance(best, dict) or not _is_number(best.get("loss")) or not isinstance(best.get("indices"), dict):
            raise bad("no best loss and indices")
        questionnaire = (unit.align if unit and unit.align else AlignConfig.from_dict(cfg)).measure.questionnaire
        if any(not isinstance(best["indices"].get(d), dict) or not _is_number(best["indices"][d].get("model"))
               for d in Questionnaire.load(questionnaire).dimensions):
            raise bad("'best.indices' lacks a dimension's model index")
    return run


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _row(unit: Unit, loss: float, indices: dict, evaluations: dict[str, dict | None],
         per_order_loss: float | None = None) -> dict:
    return {"country": unit.country, "method": unit.method, "seed": unit.seed, "loss": float(loss),
            "per_order_loss": None if per_order_loss is None else float(per_order_loss),
            "indices": {d: float(v) for d, v in indices.items()}, **evaluations}


def _evaluate(session: Session, country: str, style: str, soft: SoftPrompt | None,
              limits: dict[str, int | None]) -> dict[str, dict | None]:
    """Each evaluation's row metrics, under the prompt style (and soft prompt) the method is measured with; None
    for one not run (limit 0) or with nothing about the country."""
    out: dict[str, dict | None] = {}
    for name, limit in limits.items():
        try:
            out[name] = None if limit == 0 else get_evaluation(name).row(
                run_evaluation(name, session, country, style, soft, limit))
        except NotCovered:
            out[name] = None
    return out


def run_unit_on_worker(unit: Unit, out: str, evaluations: dict | None = None) -> dict:
    """What the driver submits: :func:`run_unit` with the session of the worker it runs on. ``evaluations``: the
    driver's registry entries of the unit's evaluations, registered here when missing (a Ray actor is another
    process: an evaluation a script registered is not in its registry)."""
    for name, target in (evaluations or {}).items():
        EVALUATIONS.setdefault(name, target)
    return run_unit(unit, worker_context(), out)


def worker_provenance() -> dict:
    return worker_context().provenance()


# ---- the driver -------------------------------------------------------------------------------------------------
class Experiment:
    """The driver: plans the units, skips those already in results.json, submits the rest to ``executor`` (default:
    this process, with ``session`` or one loaded from the configuration) and writes every finished unit's row."""

    def __init__(self, config: ExperimentConfig, out: Path, session: Session | None = None, executor=None):
        self.config, self.out = config, Path(out)
        targets = targets_for(config.align.measure.questionnaire)
        self.countries = [targets.lookup(c) for c in config.countries]
        targets.check(self.countries, config.align.measure.dimensions)  # a missing dimension fails before any work
        for name in config.evaluations:
            get_evaluation(name)  # as does an evaluation that cannot be imported
        self.units = plan(config)
        self.executor = executor or LocalExecutor(context=session,
                                                  setup=functools.partial(Session, config.align.measure))
        path = self.out / "results.json"
        self.results = read_results(path, self.units) if path.is_file() else {"rows": []}
        self.results["targets"] = {c.name: c.scores for c in self.countries}

    def _write(self) -> None:
        order = {u.key: i for i, u in enumerate(self.units)}
        self.results["rows"].sort(key=lambda r: order[(r["country"], r["method"], r["seed"])])
        self.results["summary"] = summarise(self.results["rows"])
        atomic_write_json(self.out / "results.json", self.results)

    def run(self, on_unit=None) -> dict:
        say = on_unit or (lambda msg: None)
        done = {(r["country"], r["method"], r["seed"]) for r in self.results["rows"]}
        pending = [u for u in self.units if u.key not in done]
        # anchored constants are fitted by the first unit and cached; the others then read them instead of each
        # worker fitting them at once
        workers = getattr(self.executor, "workers", 1)
        alone = self.config.align.measure.constants == ConstantsKind.ANCHORED and workers > 1
        running: dict = {}
        registered = {name: EVALUATIONS[name] for name in self.config.evaluations}
        try:
            while pending or running:
                room = 1 if alone else workers
                while pending and len(running) < room:
                    unit = pending.pop(0)
                    say(str(unit))
                    running[self.executor.submit(run_unit_on_worker, unit, str(self.out), registered)] = unit
                finished = [f for f in running if f.done()]
                if not finished:
                    time.sleep(_POLL_S)
                    continue
                for future in finished:
                    running.pop(future)
                    self.results["rows"].append(future.result())
                    self._write()
                    alone = False
        finally:  # a failed unit: keep what the others finished (they are never lost, only not yet recorded)
            for future in [f for f in running if f.done()]:
                try:
                    self.results["rows"].append(future.result())
                except Exception:  # noqa: BLE001  (the first error is the one raised)
                    continue
                self._write()
        return self.results

    def provenance(self) -> dict:
        prov = self.executor.submit(worker_provenance).result()
        describe = getattr(self.executor, "describe", None)
        return {**prov, "argv": sys.argv,
                "executor": describe() if describe else {"kind": type(self.executor).__name__}}


def read_results(path: Path, units: list[Unit]) -> dict:
    """results.json of an interrupted experiment, checked against its plan; corrupt or outdated is a clear error."""
    hint = f"delete {path} to measure every unit again (finished run folders are reused)"
    data = read_json(path, "experiment results", hint)
    planned = {u.key for u in units}
    names = dict.fromkeys(name for u in units for name in u.evaluations)
    headlines = {name: get_evaluation(name).headline for name in names}

    def bad(why: str) -> CultureAlignError:
        return CultureAlignError(f"experiment results {path} are outdated or corrupt ({why}): {hint}")

    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise bad("no list of 'rows'")
    seen = set()
    for i, row in enumerate(data["rows"]):
        if not isinstance(row, dict):
            raise bad(f"row {i} is not an object")
        missing = [k for k in ("country", "method", "seed") if k not in row]
        if missing:
            raise bad(f"row {i} has no {', '.join(repr(k) for k in missing)}")
        key = (row["country"], row["method"], row["seed"])
        if not all(isinstance(k, (str, int, type(None))) for k in key) or key not in planned:
            raise bad(f"row {i} ({key[0]!r}, {key[1]!r}, seed {key[2]!r}) is not in the experiment's plan")
        if key in seen:
            raise bad(f"row {i} repeats {key[0]}, {key[1]}, seed {key[2]}")
        seen.add(key)
        if not _is_number(row.get("loss")) or not isinstance(row.get("indices"), dict) \
                or not all(_is_number(v) for v in row["indices"].values()):
            raise bad(f"row {i} lacks a numeric 'loss' or 'indices'")
        for name, headline in headlines.items():
            metrics = row.get(name)
            if metrics is not None and (not isinstance(metrics, dict) or not _is_number(metrics.get(headline))):
                raise bad(f"row {i} has a malformed '{name}' (no numeric '{headline}')")
    if "wall_time_s" in data and not _is_number(data["wall_time_s"]):
        raise bad("'wall_time_s' is not a number")
    return data


def summarise(rows: list[dict]) -> dict:
    """Mean and 95 % CI of the loss (and of each evaluation's headline metric, e.g.
    ``culturalbench_question_accuracy``) per country and method, and a test of the soft prompt's seeds against
    each baseline: the baselines are deterministic (one value), so it is a one-sample t test (and a Wilcoxon
    signed-rank test) of the seeds' losses against that value, labelled so in ``test``."""
    evaluations = [get_evaluation(name) for name in in_rows(rows)]
    out: dict = {}
    for country in dict.fromkeys(r["country"] for r in rows):
        per = {}
        for method in METHODS:
            sel = [r for r in rows if r["country"] == country and r["method"] == method]
            if not sel:
                continue
            entry = {"loss": mean_ci([r["loss"] for r in sel])}
            for e in evaluations:
                values = [r[e.name][e.headline] for r in sel if isinstance(r.get(e.name), dict)
                          and _is_number(r[e.name].get(e.headline))]
                if values:
                    entry[e.summary_key] = mean_ci(values)
            per[method] = entry
        soft = [r["loss"] for r in rows if r["country"] == country and r["method"] == "soft prompt"]
        tests = {}
        for method in (*BASELINES, "reference mean"):
            base = [r["loss"] for r in rows if r["country"] == country and r["method"] == method]
            if soft and base:
                tests[method] = {**paired_test(soft, [base[0]] * len(soft)),
                                 "test": "one-sample t and Wilcoxon signed-rank against the baseline's value"}
        out[country] = {"methods": per, "soft_prompt_vs": tests}
    return out


def read_config(out: Path) -> ExperimentConfig:
    """The configuration of the experiment in ``out`` (its experiment.json); corrupt or outdated is a clear error."""
    path = out / "experiment.json"
    if not path.is_file():
        raise CultureAlignError(f"cannot resume: {out} has no experiment.json")
    hint = "start the experiment again without --resume (with --force to reuse the folder)"
    data = read_json(path, "experiment record", hint)
    try:
        cfg = data["config"]
        if not isinstance(cfg, dict) or not isinstance(cfg.get("align"), dict):
            raise ValueError("no 'config.align'")
        config = ExperimentConfig.from_dict(cfg)
        if not isinstance(config.countries, list) or not config.countries \
                or not all(isinstance(c, str) for c in config.countries):
            raise ValueError("'countries' is not a list of names")
        if not isinstance(config.seeds, int) or isinstance(config.seeds, bool) or config.seeds < 0:
            raise ValueError("'seeds' is not a count")
    except (KeyError, TypeError, ValueError, AttributeError, CultureAlignError) as exc:
        raise CultureAlignError(f"experiment record {path} is outdated or corrupt ({type(exc).__name__}: {exc}): "
                                f"{hint}") from None
    return config


def run_experiment(config: ExperimentConfig | None, out: str | Path, resume: bool = False, force: bool = False,
                   session: Session | None = None, on_unit=None, executor=None) -> dict:
    """Run (or resume) an experiment in ``out``; returns the results dict (also in ``out/results.json``).

    ``executor``: where the units run (:mod:`culturealign.executors`); default this process, with ``session``.
    """
    out = Path(out)
    if resume:
        config = read_config(out)
    else:
        config.align.check_applies()   # a setting its optimiser ignores is refused before anything runs
        targets = targets_for(config.align.measure.questionnaire)
        config = replace(config, countries=[targets.lookup(c).name for c in config.countries])  # "CN" -> "China"
        refuse_overwrite(out, force, what="experiment folder")
        (out / "results.json").unlink(missing_ok=True)
        shutil.rmtree(out / "runs", ignore_errors=True)  # --force: runs of an earlier experiment are not reused
    started = time.time()
    atomic_write_json(out / "experiment.json", {"config": config.to_dict(), "countries": config.countries,
                                                "seeds": list(range(config.seeds))})
    experiment = Experiment(config, out, session, executor)
    results = experiment.run(on_unit)
    results["wall_time_s"] = results.get("wall_time_s", 0) + (time.time() - started)
    results["provenance"] = experiment.provenance()
    atomic_write_json(out / "results.json", results)
    return results
