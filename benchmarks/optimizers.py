"""Optimisers on the planted-culture model at equal cost: forward-pass equivalents and wall clock.

Every run aligns a held-out country (benchmarks/planted_culture.py: the model was never trained on it, and the
start never contains its scores) with align's own loop (``culturealign.align.make_alignment``), 8 soft tokens,
the naive prompt, and records its start loss (z = 0, the soft prompt at its initialisation), then the best loss
against forward-pass equivalents (one candidate evaluation = 1, one gradient step = 3, from the run's
``history.csv``) and against seconds. Methods: ``adam`` (gradient), CMA-ES in a 64-dimensional subspace (align's
black-box default), DE in the full embedding space (the paper's setting) and random search in the subspace. All
methods of one seed start from the same point; their own random draws are independent (optimiser seed
``1000 * seed + method number``); a vocabulary or random start is drawn with the run's seed.

Usage:  python benchmarks/optimizers.py [--budget 600] [--seeds 2] [--placements prefix,suffix] [--quick]
Writes a section of BENCHMARKS.md and benchmarks/figures/optimizers-planted[-quick].png.
"""
from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common import ROOT, command, machine, write_section
from planted_culture import NEUTRAL_TEXT, PAPER_COUNTRIES, planted_info, planted_session, train_planted

from culturealign.config import AlignConfig
from culturealign.align import make_alignment
from culturealign.instrument import DIMENSIONS
from culturealign.config import SoftPromptConfig
from culturealign.softprompt import initial_embeddings
from culturealign.targets import lookup

N_TOKENS, POPSIZE = 8, 16
OPTIMIZER_NUMBER = {"adam": 0, "cma": 1, "de": 2, "random": 3}


@dataclass(frozen=True)
class Method:
    label: str
    optimizer: str
    space: str = "subspace"
    lr: float = 0.03
    schedule: str = "constant"
    loss: str = "l1"
    max_grad_norm: float | None = None   # no clipping: the planted tables were measured before align clipped by default
    extra: dict = field(default_factory=dict)


METHODS = {
    "adam": Method("Adam (gradient), lr 0.03, constant, L1", "adam"),
    "cma": Method("CMA-ES, subspace 64 (align's default)", "cma"),
    "de-full": Method("DE, full space (paper)", "de", space="full"),
    "random": Method("random search, subspace 64", "random"),
}


def soft_config(placement: str, init: str, space: str) -> SoftPromptConfig:
    """init: ``neutral`` (the text "Please answer the following question."), ``vocab`` or ``random``."""
    return SoftPromptConfig(n_tokens=N_TOKENS, placement=placement, space=space, subspace_dim=64,
                            init="text" if init == "neutral" else init,
                            init_text=NEUTRAL_TEXT if init == "neutral" else None)


def run_one(session, country: str, method: Method, placement: str, init: str, budget: int, seed: int,
            run_dir: Path) -> dict:
    """One alignment run of ``budget`` forward-pass equivalents; its start loss and its curve, read back from
    the run folder's history.csv (forward_equivalents, wall_s, best_loss, best indices)."""
    soft = soft_config(placement, init, method.space)
    opt_seed = 1000 * seed + OPTIMIZER_NUMBER[method.optimizer]
    if method.optimizer == "adam":
        cfg = AlignConfig(country=country, optimizer="adam", lr=method.lr, schedule=method.schedule, loss=method.loss,
                          max_grad_norm=method.max_grad_norm, steps=max(1, budget // 3), seed=opt_seed, soft=soft, patience=None,
                          measure=session.config)
    else:
        cfg = AlignConfig(country=country, optimizer=method.optimizer, popsize=POPSIZE, budget=budget, seed=opt_seed, patience=None,
                          soft=soft, measure=session.config)
    run = make_alignment(cfg, run_dir, session=session)
    # the start is drawn with the run's seed, shared by every method; the optimiser's own draws use opt_seed
    p0 = initial_embeddings(soft, session.backend, session.backend.tokenizer, run.country.name,
                            seed)
    if not torch.equal(p0, run.p0):
        run.p0 = p0
        run._setup()
    start_loss = float(run.objective.loss(run.survey.answer(p0[None], placement).expected)[0])
    torch.manual_seed(opt_seed)
    started = time.perf_counter()
    while not run.finished:
        row = run.step()
        run.state.elapsed = row["wall_s"] = time.perf_counter() - started
    run.save_best()
    run.checkpoint()    # writes history.csv
    run.write_run("finished")
    with open(run_dir / "history.csv") as f:
        hist = list(csv.DictReader(f))
    fe = np.array([float(h["forward_equivalents"]) for h in hist])
    wall = np.array([float(h["wall_s"]) for h in hist])
    best = np.array([float(h["best_loss"]) for h in hist])
    final = np.array([float(hist[-1][f"best_{d}"]) for d in DIMENSIONS])
    target = run.country.vector()
    return {"start": start_loss, "fe": fe, "wall": wall, "best": best, "final": float(best[-1]),
            "max_dim_error": float(np.abs(final - target).max()), "seconds": float(wall[-1])}


def loss_at(curve: dict, x: float, axis: str) -> float:
    """Best loss reached by ``x`` forward equivalents or seconds (the start loss before the first record)."""
    done = np.nonzero(curve[axis] <= x + 1e-9)[0]
    return float(curve["best"][done[-1]]) if len(done) else curve["start"]


def run_grid(session, countries, entries, budget: int, seeds: int, out: Path, log=print) -> dict:
    """entries: [(row label, Method, placement, init)] -> {row label: [result per country x seed]}."""
    results: dict[str, list[dict]] = {label: [] for label, *_ in entries}
    for country in countries:
        for seed in range(seeds):
            for i, (label, method, placement, init) in enumerate(entries):
                res = run_one(session, country, method, placement, init, budget, seed,
                              out / f"{lookup(country).code}-{seed}-{i}")
                res.update(country=lookup(country).name, seed=seed)
                results[label].append(res)
                log(f"{lookup(country).name} seed {seed} | {label}: start {res['start']:.1f} -> {res['final']:.1f} "
                    f"(max dim error {res['max_dim_error']:.1f}, {res['seconds']:.0f} s)")
    return results


def summary_table(results: dict, budget: int, reference: dict[str, float]) -> tuple[list[str], float]:
    """One row per entry: start, final at equal forward equivalents, at equal wall clock, and the goal's count."""
    seconds = {label: np.mean([r["seconds"] for r in rs]) for label, rs in results.items()}
    t_equal = min(seconds.values())
    lines = ["| setting | start loss (z = 0) | loss at " + f"{budget} forward equivalents | loss at {t_equal:.0f} s "
             "(equal wall clock) | loss / reference mean | max error of one dimension (median) | runs within 2 points "
             "on every dimension | s per run |", "|---|---|---|---|---|---|---|---|"]
    for label, rs in results.items():
        finals = [r["final"] for r in rs]
        at_t = [loss_at(r, t_equal, "wall") for r in rs]
        ratio = np.mean([r["final"] / reference[r["country"]] for r in rs])
        within = sum(r["max_dim_error"] <= 2.0 for r in rs)
        lines.append(f"| {label} | {np.mean([r['start'] for r in rs]):.1f} | {np.mean(finals):.1f} ± "
                     f"{np.std(finals):.1f} (SD) | {np.mean(at_t):.1f} | {ratio:.3f} | "
                     f"{np.median([r['max_dim_error'] for r in rs]):.1f} | {within}/{len(rs)} | {seconds[label]:.0f} |")
    return lines, t_equal


def country_table(results: dict, reference: dict[str, float]) -> list[str]:
    labels = list(results)
    countries = list(dict.fromkeys(r["country"] for rs in results.values() for r in rs))
    lines = ["| country | reference mean | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for c in countries:
        cells = [f"{np.mean([r['final'] for r in results[k] if r['country'] == c]):.1f}" for k in labels]
        lines.append(f"| {c} | {reference[c]:.1f} | " + " | ".join(cells) + " |")
    return lines


def plot(results: dict, path: Path, budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    for label, rs in results.items():
        grid_fe = np.linspace(0, budget, 200)
        fe = np.mean([[loss_at(r, x, "fe") / r["ref"] for x in grid_fe] for r in rs], axis=0)
        line, = axes[0].plot(grid_fe, fe, label=label)
        t_max = max(r["seconds"] for r in rs)
        grid_t = np.linspace(0, t_max, 200)
        axes[1].plot(grid_t, np.mean([[loss_at(r, x, "wall") / r["ref"] for x in grid_t] for r in rs], axis=0),
                     color=line.get_color())
    axes[0].set_xlabel("forward-pass equivalents (evaluation = 1, gradient step = 3)")
    axes[1].set_xlabel("seconds (one thread)")
    for ax in axes:
        ax.set_ylabel("best loss / reference-mean loss")
        ax.grid(alpha=0.3)
        ax.set_yscale("log")
    axes[0].legend(fontsize=7.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def setup(quick: bool):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    lm = train_planted(verbose=False)
    session = planted_session(lm)
    return session, planted_info(lm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=600, help="forward-pass equivalents per run")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--placements", default="prefix,suffix")
    ap.add_argument("--init", default="neutral", choices=("neutral", "vocab", "random"))
    ap.add_argument("--countries", default=None, help="comma-separated held-out countries (default: all held out)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--quick", action="store_true", help="China only, one seed, 150 forward equivalents, prefix")
    args = ap.parse_args()
    start = time.time()
    session, info = setup(args.quick)
    held = info["held_out"]
    countries = [lookup(c).name for c in args.countries.split(",")] if args.countries else held
    placements = args.placements.split(",")
    if args.quick:
        countries, args.seeds, args.budget, placements = ["China"], 1, 150, ["prefix"]
    not_held = [c for c in countries if c not in held]
    if not_held:
        raise SystemExit(f"{not_held} are training countries of the planted model: benchmark held-out ones only "
                         f"({', '.join(held)})")
    entries = [(f"{METHODS[m].label}, {p}", METHODS[m], p, args.init) for p in placements
               for m in args.methods.split(",")]
    out = Path(tempfile.mkdtemp(prefix="ca-optimizers-"))
    results = run_grid(session, countries, entries, args.budget, args.seeds, out, log=lambda s: print(s, flush=True))
    reference = {c: session.objective(lookup(c)).reference_mean_loss() for c in countries}
    for rs in results.values():
        for r in rs:
            r["ref"] = reference[r["country"]]
    lines, t_equal = summary_table(results, args.budget, reference)
    fig = ROOT / "benchmarks" / "figures" / f"optimizers-planted{'-quick' if args.quick else ''}.png"
    plot(results, fig, args.budget)
    body = (f"### Optimisers on the planted model{', quick' if args.quick else ''}\n\n"
            f"Command: `{command()}` ({time.time() - start:.0f} s)  \nMachine: {machine()}\n\n"
            f"Held-out countries: {', '.join(countries)}; {args.seeds} seed(s) each; {args.budget} forward-pass "
            f"equivalents per run (black-box: {args.budget} candidate evaluations, population {POPSIZE}; Adam: "
            f"{args.budget // 3} steps of 3); {N_TOKENS} tokens; start: "
            + ({"neutral": f'the text "{NEUTRAL_TEXT}"', "vocab": "random vocabulary rows (drawn with the seed)",
                "random": "Gaussian noise at the embedding scale (drawn with the seed)"}[args.init])
            + ", the same for every method of a seed; independent optimiser draws. Loss: L1 over the six indices "
            f"(index points), mean over runs; equal wall clock = the fastest setting's mean run time. Goal (issue 9): "
            f"within 2 index points on every dimension. Figure: `{fig.relative_to(ROOT)}`.\n\n" + "\n".join(lines)
            + "\n\nFinal loss per country (mean over seeds):\n\n" + "\n".join(country_table(results, reference)))
    write_section("optimizers-planted" + ("-quick" if args.quick else ""), body)
    print(body)


if __name__ == "__main__":
    main()
