"""Sample efficiency: loss reached against candidate evaluations, per optimiser and search space.

Runs, at the same budget and over seeds for each of the four paper countries, DE in the full embedding space (the
paper-faithful setting), DE in a random subspace, CMA-ES in a random subspace and random search, on the
planted-culture model (benchmarks/planted_culture.py; loss 0 is attainable) and, if asked, on the default model.

Usage:  python benchmarks/optimizers.py [--models planted,default] [--budget 480] [--seeds 3] [--quick]
Writes a table to BENCHMARKS.md and the convergence figure to benchmarks/figures/optimizers-<model>.png.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, command, machine, write_section
from planted_culture import PAPER_COUNTRIES, planted_session, train_planted

from culturealign.align import AlignConfig, align
from culturealign.measure import MeasureConfig, Session
from culturealign.models import load_model
from culturealign.softprompt import SoftPromptConfig
from culturealign.targets import lookup

NEUTRAL_INIT = "Please answer the following question."  # names no country: the search starts from the untold model
SETTINGS = {  # key: (label, setting)
    "de-full": ("DE, full space (paper)", dict(optimizer="de", space="full")),
    "de-sub": ("DE, subspace", dict(optimizer="de", space="subspace")),
    "cma-sub": ("CMA-ES, subspace", dict(optimizer="cma", space="subspace")),
    "random-sub": ("random search, subspace", dict(optimizer="random", space="subspace")),
    # align's default initialisation, "You are a person from <country>.", for comparison
    "de-sub-country": ("DE, subspace, init names the country", dict(optimizer="de", space="subspace", init_text=None)),
    "cma-sub-country": ("CMA-ES, subspace, init names the country",
                        dict(optimizer="cma", space="subspace", init_text=None)),
    # the first prototype's setting, DE with suffix placement (its stall is the baseline to beat)
    "prototype": ("prototype: DE, subspace, suffix, init names the country",
                  dict(optimizer="de", space="subspace", init_text=None, placement="suffix")),
}


def best_curve(session: Session, country: str, optimizer: str, soft: SoftPromptConfig, popsize: int, budget: int,
               seed: int, run_dir: Path) -> np.ndarray:
    """One alignment run; the best loss after each of 1..budget evaluations, shape (budget,)."""
    cfg = AlignConfig(country=country, optimizer=optimizer, popsize=popsize, budget=budget, seed=seed, soft=soft,
                      measure=session.config)
    align(cfg, run_dir, session=session, force=True)
    hist = np.genfromtxt(run_dir / "history.csv", delimiter=",", names=True)
    return np.interp(np.arange(1, budget + 1), np.atleast_1d(hist["evaluations"]), np.atleast_1d(hist["best_loss"]))


def baselines_for(session: Session, target) -> dict[str, float]:
    return {"naive": session.measure(target, "naive")["loss"], "persona": session.measure(target, "persona")["loss"],
            "reference mean": session.objective(target).reference_mean_loss()}


def run_model(name: str, session: Session, args, out: Path) -> tuple[list[str], dict]:
    labels = [SETTINGS[k][0] for k in args.settings]
    curves: dict[str, list[np.ndarray]] = {label: [] for label in labels}
    finals: dict[tuple[str, str], list[float]] = {}
    countries = PAPER_COUNTRIES[:1] if args.quick else args.countries
    baselines = {}
    for country in countries:
        target = lookup(country)
        baselines[target.name] = baselines_for(session, target)
        for key in args.settings:
            label, setting = SETTINGS[key]
            for seed in range(args.seeds):
                soft = SoftPromptConfig(n_tokens=args.n_tokens, placement=setting.get("placement", args.placement),
                                        space=setting["space"],
                                        subspace_dim=args.subspace_dim, scale=args.scale,
                                        init_text=setting.get("init_text", args.init_text))
                run_dir = out / name / f"{target.code}-{key}-{seed}"
                curve = best_curve(session, country, setting["optimizer"], soft, args.popsize, args.budget, seed,
                                   run_dir)
                curves[label].append(curve / baselines[target.name]["reference mean"])
                finals.setdefault((target.name, label), []).append(float(curve[-1]))
                print(f"{name} {target.name} {label} seed {seed}: {curve[-1]:.1f}", flush=True)
    lines = ["| country | naive | persona | reference mean | " + " | ".join(labels) + " |",
             "|---|---|---|---|" + "---|" * len(labels)]
    for c, base in baselines.items():
        cells = [f"{np.mean(finals[(c, k)]):.1f} ± {np.std(finals[(c, k)]):.1f}" for k in labels]
        lines.append(f"| {c} | {base['naive']:.1f} | {base['persona']:.1f} | {base['reference mean']:.1f} | "
                     + " | ".join(cells) + " |")
    means = [f"{np.mean([np.mean(finals[(c, k)]) for c in baselines]):.1f}" for k in labels]
    lines.append("| **mean** | | | | " + " | ".join(means) + " |")
    return lines, curves


def plot(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.2), constrained_layout=True)
    for label, runs in curves.items():
        arr = np.array(runs)
        x = np.arange(1, arr.shape[1] + 1)
        line, = ax.plot(x, arr.mean(0), label=label)
        ax.fill_between(x, arr.min(0), arr.max(0), color=line.get_color(), alpha=0.07)
    ax.set_xlabel("candidate evaluations")
    ax.set_ylabel("best loss / reference-mean loss")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="planted")
    ap.add_argument("--budget", type=int, default=480)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--popsize", type=int, default=16)
    ap.add_argument("--n-tokens", type=int, default=8)
    ap.add_argument("--placement", default="prefix", help="prefix: the planted model reads the country there")
    ap.add_argument("--subspace-dim", type=int, default=64)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--init", choices=("neutral", "country"), default="neutral",
                    help="initial text of the settings that do not fix it: neutral, or 'You are a person from <country>.'")
    ap.add_argument("--countries", default=",".join(PAPER_COUNTRIES), help="comma-separated (default: the paper's four)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {','.join(SETTINGS)}")
    ap.add_argument("--quick", action="store_true", help="one country, one seed, budget 64")
    args = ap.parse_args()
    args.settings = [k.strip() for k in args.settings.split(",")]
    unknown = [k for k in args.settings if k not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}: choose from {list(SETTINGS)}")
    args.countries = [c.strip() for c in args.countries.split(",")]
    args.init_text = NEUTRAL_INIT if args.init == "neutral" else None
    if args.quick:
        args.seeds, args.budget = 1, 64
    out = Path(tempfile.mkdtemp(prefix="ca-optimizers-"))
    for name in args.models.split(","):
        start = time.time()
        if name == "planted":
            session = planted_session(train_planted(verbose=False))
        else:
            session = Session(MeasureConfig(model=name), lm=load_model(name))
        lines, curves = run_model(name, session, args, out)
        fig = ROOT / "benchmarks" / "figures" / f"optimizers-{name}{'-quick' if args.quick else ''}.png"
        plot(curves, fig, f"{name} model: best loss vs evaluations (mean, min-max over countries x seeds)")
        body = (f"### Sample efficiency on the {name} model{', quick' if args.quick else ''}\n\n"
                f"Command: `{command()}` ({time.time() - start:.0f} s)  \n"
                f"Machine: {machine()}\n\nFinal best L1 loss after {args.budget} evaluations, mean ± SD over {args.seeds} "
                f"seed(s); population {args.popsize}, {args.n_tokens} tokens, {args.placement} placement, subspace "
                f"dimension {args.subspace_dim}, scale {args.scale}, anchored constants, initial text "
                f"{'naming the country' if args.init == 'country' else repr(NEUTRAL_INIT)} unless the column says "
                f"otherwise. Figure: "
                f"`{fig.relative_to(ROOT)}`.\n\n" + "\n".join(lines))
        write_section(f"optimizers-{name}" + ("-quick" if args.quick else ""), body)
        print(body)


if __name__ == "__main__":
    main()
