"""Choosing align's defaults on the planted-culture model: one factor at a time, at equal forward-pass cost.

Two bases, each varied one factor at a time: Adam (gradient: learning rate 0.01 / 0.03 / 0.1, constant or cosine
schedule, L1 or Huber surrogate) and CMA-ES in a 64-dimensional subspace (align's black-box default); for each the
start (neutral text, random vocabulary rows, Gaussian noise) and the placement (prefix, suffix); and DE in the full
space (the paper's setting) from the same starts. Every run aligns a held-out country, starts from a point shared by
every row of its seed (vocabulary and random starts are drawn with the seed) and reports its own start loss (z = 0).
Rows differ in the optimiser's own draws (independent seeds per optimiser). See benchmarks/optimizers.py.

Usage:  python benchmarks/defaults.py [--budget 450] [--seeds 2] [--countries ...] [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from common import command, machine, write_section
from optimizers import METHODS, Method, loss_at, run_grid, setup

from culturealign.targets import lookup

ADAM, CMA = METHODS["adam"], METHODS["cma"]


def variants() -> list[tuple[str, Method, str, str]]:
    """(label, method, placement, init) per row."""
    adam = lambda **kw: dataclasses.replace(ADAM, **kw)  # noqa: E731
    return [
        ("Adam base: lr 0.03, constant, L1, prefix, neutral start", ADAM, "prefix", "neutral"),
        ("Adam, lr 0.01", adam(lr=0.01), "prefix", "neutral"),
        ("Adam, lr 0.1", adam(lr=0.1), "prefix", "neutral"),
        ("Adam, cosine schedule", adam(schedule="cosine"), "prefix", "neutral"),
        ("Adam, Huber loss (delta 2)", adam(loss="huber"), "prefix", "neutral"),
        ("Adam, lr 0.1, cosine", adam(lr=0.1, schedule="cosine"), "prefix", "neutral"),
        ("Adam, suffix placement", ADAM, "suffix", "neutral"),
        ("Adam, vocabulary start", ADAM, "prefix", "vocab"),
        ("Adam, random start", ADAM, "prefix", "random"),
        ("CMA-ES base: subspace 64, prefix, neutral start", CMA, "prefix", "neutral"),
        ("CMA-ES, suffix placement", CMA, "suffix", "neutral"),
        ("CMA-ES, vocabulary start", CMA, "prefix", "vocab"),
        ("CMA-ES, random start", CMA, "prefix", "random"),
        ("DE, full space (paper), neutral start", METHODS["de-full"], "prefix", "neutral"),
        ("DE, full space (paper), vocabulary start", METHODS["de-full"], "prefix", "vocab"),
    ]


QUICK_ROWS = (0, 2, 3, 4, 9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=450, help="forward-pass equivalents per run")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--countries", default="U.S.A.,China,India,Saudi Arabia",
                    help="comma-separated held-out countries")
    ap.add_argument("--rows", default=None, help="comma-separated row numbers (0 = Adam base) to run only these")
    ap.add_argument("--quick", action="store_true", help="China only, one seed, 150 forward equivalents, five rows")
    args = ap.parse_args()
    start = time.time()
    session, info = setup(args.quick)
    rows = variants()
    countries = [lookup(c).name for c in args.countries.split(",")]
    if args.quick:
        args.seeds, args.budget, countries = 1, 150, ["China"]
        rows = [rows[i] for i in QUICK_ROWS]
    if args.rows:
        rows = [variants()[int(i)] for i in args.rows.split(",")]
    not_held = [c for c in countries if c not in info["held_out"]]
    if not_held:
        raise SystemExit(f"{not_held} are training countries of the planted model: use held-out ones "
                         f"({', '.join(info['held_out'])})")
    out = Path(tempfile.mkdtemp(prefix="ca-defaults-"))
    results = run_grid(session, countries, rows, args.budget, args.seeds, out, log=lambda s: print(s, flush=True))
    reference = {c: session.objective(lookup(c)).reference_mean_loss() for c in countries}
    half = args.budget // 3
    lines = ["| setting | start loss (z = 0) | final loss | SD over runs | loss at " + f"{half} forward equivalents | "
             "max error of one dimension (median) | runs within 2 points on every dimension | s per run |",
             "|---|---|---|---|---|---|---|---|"]
    for label, rs in results.items():
        finals = [r["final"] for r in rs]
        lines.append(f"| {label} | {np.mean([r['start'] for r in rs]):.1f} | {np.mean(finals):.1f} | "
                     f"{np.std(finals):.1f} | {np.mean([loss_at(r, half, 'fe') for r in rs]):.1f} | "
                     f"{np.median([r['max_dim_error'] for r in rs]):.1f} | "
                     f"{sum(r['max_dim_error'] <= 2.0 for r in rs)}/{len(rs)} | "
                     f"{np.mean([r['seconds'] for r in rs]):.0f} |")
    body = (f"### Choosing align's defaults (planted-culture model){', quick' if args.quick else ''}\n\n"
            f"Command: `{command()}` ({time.time() - start:.0f} s)  \nMachine: {machine()}\n\n"
            f"One factor at a time; held-out countries {', '.join(countries)} x {args.seeds} seed(s); "
            f"{args.budget} forward-pass equivalents per run ({args.budget // 3} Adam steps, or {args.budget} "
            f"candidate evaluations in populations of 16); 8 tokens. Reference-mean loss: "
            + ", ".join(f"{c} {v:.1f}" for c, v in reference.items()) + ".\n\n" + "\n".join(lines))
    write_section("defaults" + ("-quick" if args.quick else ""), body)
    print(body)


if __name__ == "__main__":
    main()
