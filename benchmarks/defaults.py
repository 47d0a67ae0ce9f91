"""Choosing align's defaults: one factor at a time around a base setting, on the planted-culture model.

Each row changes one thing (optimiser, subspace dimension, perturbation scale, population, number of tokens,
initialisation) and reports the mean final loss over the four paper countries and the seeds, at a fixed budget, plus
the evaluations needed to bring the loss below half of the reference-mean loss. Loss 0 is attainable on this model
(benchmarks/planted_culture.py), so lower is better without a floor in sight.

Usage:  python benchmarks/defaults.py [--budget 320] [--seeds 2] [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from common import command, machine, write_section
from optimizers import NEUTRAL_INIT, baselines_for, best_curve
from planted_culture import PAPER_COUNTRIES, planted_session, train_planted

from culturealign.softprompt import SoftPromptConfig
from culturealign.targets import lookup

BASE = dict(optimizer="de", popsize=16, soft=SoftPromptConfig(placement="prefix", init_text=NEUTRAL_INIT))
VARIANTS = {  # label: changes to BASE
    "base (DE, subspace 64, scale 1, population 16, 8 tokens, neutral init)": {},
    "CMA-ES": dict(optimizer="cma"),
    "DE, full space": dict(space="full"),
    "subspace 16": dict(subspace_dim=16),
    "subspace 256": dict(subspace_dim=256),
    "scale 0.3": dict(scale=0.3),
    "scale 3": dict(scale=3.0),
    "population 8": dict(popsize=8),
    "population 32": dict(popsize=32),
    "4 tokens": dict(n_tokens=4),
    "16 tokens": dict(n_tokens=16),
    "init names the country": dict(init_text=None),
    "init: random vocabulary rows": dict(init="vocab"),
    "suffix placement": dict(placement="suffix"),
}


def setting(changes: dict) -> tuple[str, int, SoftPromptConfig]:
    soft_fields = {f.name for f in dataclasses.fields(SoftPromptConfig)}
    soft = dataclasses.replace(BASE["soft"], **{k: v for k, v in changes.items() if k in soft_fields})
    return changes.get("optimizer", BASE["optimizer"]), changes.get("popsize", BASE["popsize"]), soft


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=320)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--variants", default=None, help="comma-separated row numbers (0 = base) to run only these")
    ap.add_argument("--quick", action="store_true", help="one country, one seed, budget 96, five rows")
    args = ap.parse_args()
    variants = list(VARIANTS.items())
    countries = PAPER_COUNTRIES
    if args.quick:
        args.seeds, args.budget, countries, variants = 1, 96, PAPER_COUNTRIES[:1], variants[:5]
    if args.variants:
        variants = [variants[int(i)] for i in args.variants.split(",")]
    start = time.time()
    session = planted_session(train_planted(verbose=False))
    targets = [lookup(c) for c in countries]
    half = {t.name: baselines_for(session, t)["reference mean"] / 2 for t in targets}
    out = Path(tempfile.mkdtemp(prefix="ca-defaults-"))
    lines = ["| setting | mean final loss | SD over runs | evaluations to half the reference-mean loss |",
             "|---|---|---|---|"]
    for i, (label, changes) in enumerate(variants):
        optimizer, popsize, soft = setting(changes)
        finals, reach = [], []
        for t in targets:
            for seed in range(args.seeds):
                curve = best_curve(session, t.name, optimizer, soft, popsize, args.budget, seed,
                                   out / f"{i}-{t.code}-{seed}")
                finals.append(curve[-1])
                below = np.nonzero(curve <= half[t.name])[0]
                reach.append(below[0] + 1 if len(below) else np.inf)
        reached = [r for r in reach if np.isfinite(r)]
        reach_text = (f"{np.median(reached):.0f} (median; {len(reached)}/{len(reach)} runs got there)" if reached
                      else f"not reached in {args.budget}")
        lines.append(f"| {label} | {np.mean(finals):.1f} | {np.std(finals):.1f} | {reach_text} |")
        print(lines[-1], flush=True)
    body = (f"### Choosing align's defaults (planted-culture model){', quick' if args.quick else ''}\n\n"
            f"Command: `{command()}` ({time.time() - start:.0f} s)  \nMachine: {machine()}\n\n"
            f"One factor at a time around the base; {args.budget} evaluations, "
            f"{len(targets)} countries x {args.seeds} seed(s), prefix placement unless the row says otherwise.\n\n"
            + "\n".join(lines))
    write_section("defaults" + ("-quick" if args.quick else ""), body)
    print(body)


if __name__ == "__main__":
    main()
