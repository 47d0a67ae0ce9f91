"""Every country on the default model: the atlas of target against achieved, through the Ray executor.

Runs (or resumes) ``culturealign experiment --countries all`` with a small alignment budget on Ray actors, then
writes the experiment's report (its ``atlas.png`` is copied to ``benchmarks/figures/atlas-<model>.png``), its
``results.json`` to ``benchmarks/results/atlas-<model>.json`` and a section to BENCHMARKS.md: per country, the soft
prompt's start (its loss before the first step, the persona sentence's tokens), the prompting baselines, the
reference mean, the loss after the budget, and whether alignment helps.

    python benchmarks/atlas.py --steps 3 --actors 2 --out exp/atlas        # ~1 h on 2 CPU cores

An interrupted run continues where it stopped: run the same command again (finished units are read back).
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from common import ROOT, command, machine, write_section

from culturealign import report
from culturealign.config import AlignConfig, MeasureConfig
from culturealign.executors import LocalExecutor, RayExecutor
from culturealign.experiment import ExperimentConfig, read_config, run_experiment
from culturealign.session import Session
from culturealign.targets import countries_for, lookup

METHODS = ("naive", "persona", "icl", "reference mean", "soft prompt")
OPINION_METHODS = ("naive", "persona", "icl", "soft prompt")


def start_loss(run_dir: Path) -> float | None:
    """The loss of a gradient run's first row: the soft prompt as initialised, before any step."""
    path = run_dir / "history.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        first = next(csv.DictReader(f), None)
    return float(first["loss"]) if first else None


def table(out: Path, results: dict) -> tuple[str, dict]:
    """The per-country markdown table (sorted by the soft prompt's gain over the best baseline) and a summary."""
    data = report.load_folder(out)
    verdicts = {h["country"]: h for h in report.helps(data)}
    loss = {(r["country"], r["method"]): r["loss"] for r in results["rows"] if r["method"] != "soft prompt"}
    # held-out opinions (--opinions): similarity and specificity per prompting method and the soft prompt (seed mean)
    opinions = {}
    for r in results["rows"]:
        if isinstance(r.get("opinions"), dict) and r["method"] in OPINION_METHODS:
            opinions.setdefault((r["country"], r["method"]), []).append(r["opinions"])
    methods = " / ".join("ICL" if m == "icl" else m.replace("soft prompt", "soft") for m in OPINION_METHODS)
    extra = f" opinions: {methods} | specificity: {methods} |" if opinions else ""
    lines = ["| country | start | naive | persona | ICL | ref. mean | soft prompt | best baseline | verdict |" + extra,
             "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if opinions else "")]
    starts = []
    for name in sorted(verdicts, key=lambda c: verdicts[c]["difference"]):
        h = verdicts[name]
        code = lookup(name).code
        seeds = sorted(out.glob(f"runs/{code}-seed*"))
        s = [x for x in (start_loss(d) for d in seeds) if x is not None]
        starts += s
        row = [name, f"{np.mean(s):.1f}" if s else "-",
               *(f"{loss[(name, m)]:.1f}" for m in METHODS[:4]), f"{h['soft_prompt']['mean']:.1f}",
               h["best_baseline"], h["verdict"]]
        if opinions:
            row += [" / ".join(_mean_of(opinions.get((name, m)), k) for m in OPINION_METHODS)
                    for k in ("similarity", "specificity")]
        lines.append("| " + " | ".join(row) + " |")
    summary = {"countries": len(verdicts),
               "helps": sum(h["verdict"] == "helps" for h in verdicts.values()),
               "mean": {m: float(np.mean([loss[(c, m)] for c in verdicts])) for m in METHODS[:4]},
               "start": float(np.mean(starts)) if starts else None}
    summary["mean"]["soft prompt"] = float(np.mean([h["soft_prompt"]["mean"] for h in verdicts.values()]))
    return "\n".join(lines), summary


def _mean_of(rows: list[dict] | None, metric: str) -> str:
    values = [r[metric] for r in rows or [] if r.get(metric) is not None]
    return f"{np.mean(values):.3f}" if values else "-"


def dimension_table(results: dict) -> str:
    """Per dimension and method: Pearson r between the countries' published scores and the model's indices (does
    the method tell the countries apart in the right direction?) and the mean absolute error."""
    methods = ("naive", "persona", "icl", "soft prompt")
    dims = list(next(iter(results["targets"].values())))
    lines = ["| dimension | " + " | ".join(f"{m}: r / MAE" for m in methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for d in dims:
        cells = []
        for m in methods:
            pairs = [(results["targets"][r["country"]][d], r["indices"][d]) for r in results["rows"]
                     if r["method"] == m and results["targets"][r["country"]].get(d) is not None]
            t, y = np.array(pairs).T
            cells.append(f"{np.corrcoef(t, y)[0, 1]:.2f} / {np.abs(t - y).mean():.1f}")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--steps", type=int, default=3, help="Adam steps per alignment run (the small budget)")
    # the atlas table was measured with align's earlier Adam defaults; align's own are now lr 0.02, clipped to norm 1
    ap.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate (the atlas table: 0.01)")
    ap.add_argument("--max-grad-norm", type=float, default=0.0, help="gradient clipping (0: none, as for the table)")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--executor", choices=("ray", "local"), default="ray")
    ap.add_argument("--actors", type=int, default=2, help="Ray actors (one torch thread each on CPUs)")
    ap.add_argument("--opinions", type=int, default=0,
                    help="held-out WVS opinion questions per country (0: skip, as for the table; -1: all)")
    ap.add_argument("--out", type=Path, default=Path("exp/atlas"))
    args = ap.parse_args()

    resume = (args.out / "experiment.json").is_file()
    if resume:
        config = read_config(args.out)
    else:
        measure = MeasureConfig(model=args.model)
        config = ExperimentConfig(countries=[c.name for c in countries_for("all")], seeds=args.seeds,
                                  align=AlignConfig(country="", steps=args.steps, lr=args.lr, patience=None,
                                                    max_grad_norm=args.max_grad_norm or None, measure=measure),
                                  evaluations={"culturalbench": 0, **({"opinions": None if args.opinions < 0
                                                                       else args.opinions} if args.opinions else {})})
    setup = functools.partial(Session, config.align.measure)
    runner = RayExecutor(setup, actors=args.actors) if args.executor == "ray" else LocalExecutor(setup=setup)
    with runner:
        results = run_experiment(config, args.out, resume=resume, on_unit=lambda msg: print(msg, flush=True),
                                 executor=runner)
    wall = results["wall_time_s"]  # summed over every call that worked on the experiment

    name = config.align.measure.model
    report.write_report(args.out)
    figure = ROOT / "benchmarks" / "figures" / f"atlas-{name}.png"
    shutil.copyfile(args.out / "atlas.png", figure)
    saved = ROOT / "benchmarks" / "results" / f"atlas-{name}.json"
    saved.write_text(json.dumps({"config": config.to_dict(), **results}, indent=1))
    rows, summary = table(args.out, results)
    means = summary["mean"]
    seeds = "seed 0" if config.seeds == 1 else f"seeds 0..{config.seeds - 1}"
    body = f"""## Every country on `{name}` (the atlas)

`{command()}` ({machine()}; {wall / 60:.0f} min in all, on {args.actors} Ray actors of one torch thread each,
sharing the 2 cores with other work; results in `{saved.relative_to(ROOT)}`, the run folders in `{args.out}`).
{summary['countries']} countries (every one with all six published scores), one alignment run each
({config.align.steps} Adam steps from the persona sentence, {seeds}), leave-one-out anchored constants, CulturalBench
skipped. *start* is the soft prompt's loss before its first step; *best baseline* is the lowest of naive, persona,
ICL and the reference mean; with one seed the verdict is *helps* when the soft prompt's loss is below it.

Mean loss over the countries: start {summary['start']:.1f}, naive {means['naive']:.1f}, persona
{means['persona']:.1f}, ICL {means['icl']:.1f}, reference mean {means['reference mean']:.1f}, soft prompt
{means['soft prompt']:.1f}. The soft prompt beats the best baseline for **{summary['helps']} of
{summary['countries']}** countries.

![atlas](figures/{figure.name})

Per dimension, over the countries: correlation r between published score and the model's index, and mean absolute
error (the soft prompt's row is one seed per country):

{dimension_table(results)}

{rows}
"""
    write_section(f"atlas-{name}", body)
    print(body)


if __name__ == "__main__":
    sys.exit(main())
