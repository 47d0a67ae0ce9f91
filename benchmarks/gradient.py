"""Gradient against black-box alignment at equal compute on the default model.

For each country: the start (the soft prompt at its initialisation, z = 0, shared by every method: same init text,
same seed-independent start), the naive, persona and ICL prompts and the reference-mean predictor; then each method
runs for the same compute from that start (CPU seconds of the process / torch threads: wall seconds on an idle machine,
and fair when other work shares the cores): ``adam`` (gradients, align's gradient optimiser), ``cma``
(align's black-box default, 64-dim subspace) and ``de`` (the paper-faithful setting: DE in the full embedding space).
Every run records its best loss against seconds and against forward-pass equivalents, so one curve gives every
smaller budget. Each final prompt is then measured with each option order alone, on a reworded questionnaire
(vsm2013-reworded) and on CulturalBench-Hard questions about the country, to show whether it overfits
the wording or the option positions. Black-box runs share nothing with each other (their own seeds).

Usage:  python benchmarks/gradient.py [--countries US,CN,IN,SA] [--minutes 10] [--runs adam:2,cma:2,de:1] [--quick]
        [--add] [--until-done] [--out FILE]      add runs to saved results (reusing each country's baselines)
        python benchmarks/gradient.py --merge A.json B.json   merge runs made in parallel into the saved results
Writes a section of BENCHMARKS.md (the README's main table is benchmarks/heldout.py's), benchmarks/figures/gradient-default.png and benchmarks/results/gradient-default.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, command, culturalbench_accuracy, machine, write_section

from culturealign.config import AlignConfig
from culturealign.align import make_alignment
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.config import SoftPromptConfig
from culturealign.softprompt import SoftPrompt, initial_embeddings
from culturealign.targets import lookup

REWORDED = "vsm2013-reworded"   # a registered wording (culturealign/data/vsm2013/)
METHODS = {  # name: (label, AlignConfig fields, SoftPromptConfig fields)
    "adam": ("Adam (gradient), prefix, align's default schedule", dict(optimizer="adam"), dict(placement="prefix")),
    "adam-suffix": ("Adam (gradient), suffix", dict(optimizer="adam"), dict(placement="suffix")),
    "adam-lr0.03": ("Adam, prefix, lr 0.03 over 40 steps, no gradient clipping",
                    dict(optimizer="adam", lr=0.03, steps=40, max_grad_norm=None), dict(placement="prefix")),
    "adam-lr0.01": ("Adam, prefix, the earlier default (lr 0.01, cosine over 20 steps)",
                    dict(optimizer="adam", lr=0.01, steps=20), dict(placement="prefix")),
    "cma": ("CMA-ES, 64-dim subspace, prefix (black-box default)", dict(optimizer="cma"),
            dict(space="subspace", placement="prefix")),
    "de": ("DE, full space, prefix (paper)", dict(optimizer="de"), dict(space="full", placement="prefix")),
}
DEFAULT_STEPS = AlignConfig(country="").steps
COLORS = {"adam": "tab:red", "adam-suffix": "tab:orange", "adam-lr0.01": "tab:purple", "adam-lr0.03": "tab:pink",
          "cma": "tab:blue", "de": "tab:green"}


def compute_seconds() -> float:
    """CPU seconds of this process divided by torch's thread count: equal to wall seconds on an idle machine, and not
    inflated when other work shares the cores, so every method gets the same compute whatever the machine's load."""
    import torch

    return time.process_time() / torch.get_num_threads()


def timed_run(session: Session, country: str, method: str, seed: int, seconds: float, run_dir: Path,
              until_done: bool = False) -> dict:
    """One alignment for ``seconds`` of compute (``compute_seconds``); the curve (compute seconds, forward
    equivalents, best loss, wall seconds). ``until_done``: a gradient run also stops at the end of its schedule."""
    _, fields, soft_fields = METHODS[method]
    # without until_done adam runs on past its schedule's last step at lr / 10 until the compute is spent
    cfg = AlignConfig(country=country, seed=seed, budget=10 ** 6, patience=None,
                      soft=SoftPromptConfig(**soft_fields), measure=session.config, **fields)
    run = make_alignment(cfg, run_dir, session=session)
    start, wall = compute_seconds(), time.perf_counter()
    curve = []
    while compute_seconds() - start < seconds and not (until_done and run.budget_spent):
        row = run.step()
        curve.append((compute_seconds() - start, row["forward_equivalents"], row["best_loss"],
                      time.perf_counter() - wall))
    run.state.elapsed = time.perf_counter() - wall
    run.save_best()
    run.write_run("finished")
    return {"method": method, "seed": seed, "curve": curve, "best_loss": run.state.best_loss,
            "steps": run.state.generation, "evaluations": run.state.evaluations, "minutes": seconds / 60}


def held_out(session: Session, reworded: Session, prompt: SoftPrompt | None, country, cb_limit: int) -> dict:
    """Losses of a prompt (None: the plain model) on the training survey, each option order alone (the same 48
    rows, read per order), the reworded items (same constants), and CulturalBench question accuracy."""
    objective = session.objective(country)
    soft = None if prompt is None else prompt.embeddings.unsqueeze(0)
    placement = "prefix" if prompt is None else prompt.placement
    answers = session.survey("naive", country).answer(soft, placement)
    by_order = answers.expected_by_order[0]
    out = {"training": float(objective.loss(answers.expected)[0]),
           **{f"{o} order only": float(objective.loss(by_order[i][None])[0]) for i, o in enumerate(answers.orders)}}
    re_objective = reworded.objective(country)
    out["reworded"] = float(re_objective.loss(reworded.survey("naive", country).answer(soft, placement).expected)[0])
    accuracy = culturalbench_accuracy(session.backend, country.name, prompt, cb_limit) if cb_limit else None
    if accuracy is not None:
        out["culturalbench"] = accuracy
    return out


def has_run(entry: dict, method: str, seed: int) -> bool:
    """Whether a country's saved results already hold the run of ``method`` with ``seed``."""
    return any((r["method"], r["seed"]) == (method, seed) for r in entry["runs"])


def baselines(session: Session, reworded: Session, country, cb_limit: int) -> dict:
    """A country's shared start (the soft prompt at z = 0, per placement), prompting baselines, reference-mean loss
    and the plain model's held-out losses."""
    objective = session.objective(country)
    p0 = initial_embeddings(SoftPromptConfig(), session.backend, session.backend.tokenizer, country.name, 0)
    start = {pl: float(objective.loss(session.survey("naive", country).answer(p0[None], pl).expected)[0])
             for pl in ("prefix", "suffix")}
    return {"start": start, "reference mean": objective.reference_mean_loss(),
            **{s: session.measure(country, s)["loss"] for s in ("naive", "persona", "icl")}, "runs": [],
            "plain": held_out(session, reworded, None, country, cb_limit)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--countries", default="US,CN,IN,SA")
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="compute per run: CPU minutes of this process / torch threads (= wall minutes when idle)")
    ap.add_argument("--runs", default="adam:2,cma:2,de:1", help="method:seeds,...")
    ap.add_argument("--report-only", action="store_true", help="rewrite the tables from the saved results")
    ap.add_argument("--add", action="store_true",
                    help="add these runs to the saved results (runs already there, by method and seed, are kept and "
                         "not rerun; each country's start, baselines and plain held-out losses are reused)")
    ap.add_argument("--merge", nargs="+", metavar="RESULTS",
                    help="add the runs (and commands) of these results files, e.g. from runs made in parallel with "
                         "--out, to the saved results, then write the tables")
    ap.add_argument("--until-done", action="store_true",
                    help="a gradient run stops at the end of its schedule (its steps) if that comes before the budget")
    ap.add_argument("--culturalbench", type=int, default=20, help="CulturalBench questions per country (0: skip)")
    ap.add_argument("--quick", action="store_true", help="U.S.A., 1 minute per run, one seed each")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gradient-default.json"))
    args = ap.parse_args()
    if args.quick:
        args.countries, args.minutes, args.runs, args.culturalbench = "US", 1.0, "adam-suffix:1,cma:1", 5
    out_path = Path(args.out if not args.quick else str(args.out).replace(".json", "-quick.json"))
    if args.report_only or args.merge:
        results = json.loads(out_path.read_text())
        for other in map(json.loads, map(Path.read_text, map(Path, args.merge or []))):
            results["commands"] += [c for c in other["commands"] if c not in results["commands"]]
            for name, entry in other["countries"].items():
                mine = results["countries"].setdefault(name, {**entry, "runs": []})
                mine["runs"] += [r for r in entry["runs"] if not has_run(mine, r["method"], r["seed"])]
        out_path.write_text(json.dumps(results, indent=1))
        write_report(results, quick=args.quick)
        return
    runs = [(m, int(n)) for m, n in (x.split(":") for x in args.runs.split(","))]
    session = Session(MeasureConfig())
    # the reworded questionnaire, measured under the training constants (the loss must mean the same thing)
    reworded = Session(MeasureConfig(questionnaire=str(REWORDED)), lm=session.backend,
                       constants=session.resolve_constants())
    results = {"commands": [], "machine": machine(), "countries": {}}
    if args.add:
        results = json.loads(out_path.read_text())
    results["commands"].append(command())
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gradient-bench-"))
    for code in args.countries.split(","):
        country = lookup(code)
        entry = results["countries"].get(country.name) or baselines(session, reworded, country, args.culturalbench)
        print(f"{country.name}: start {entry['start']}, reference mean {entry['reference mean']:.1f}", flush=True)
        for method, seeds in runs:
            for seed in range(seeds):
                if has_run(entry, method, seed):
                    continue
                run_dir = tmp / f"{code}-{method}-{seed}"
                res = timed_run(session, country.name, method, seed, args.minutes * 60, run_dir, args.until_done)
                res["held_out"] = held_out(session, reworded, SoftPrompt.load(run_dir), country, args.culturalbench)
                entry["runs"].append(res)
                print(f"  {method} seed {seed}: {res['best_loss']:.1f} after {res['steps']} steps "
                      f"({res['evaluations']} evaluations)", flush=True)
                results["countries"][country.name] = entry
                out_path.write_text(json.dumps(results, indent=1))
    write_report(results, quick=args.quick)


def loss_at(run: dict, seconds: float) -> float:
    """A run's best loss after ``seconds`` of compute, read from its curve (its last point within the budget)."""
    within = [c[2] for c in run["curve"] if c[0] <= seconds]
    return within[-1] if within else float("nan")


def write_report(results: dict, quick: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["countries"])
    methods = [m for m in METHODS if any(r["method"] == m for e in results["countries"].values() for r in e["runs"])]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    rows, robust_rows = [], []
    for ax, name in zip(axes[0], names):
        e = results["countries"][name]
        per: dict = {}
        for r in e["runs"]:
            per.setdefault(r["method"], []).append(r)
            start = e["start"][METHODS[r["method"]][2]["placement"]]
            t, best = [c[0] for c in r["curve"]], [c[2] for c in r["curve"]]
            ax.step([0, *t], [start, *best], where="post", color=COLORS[r["method"]], alpha=0.8,
                    label=f"{r['method']} seed {r['seed']}")
        ax.axhline(e["reference mean"], color="gray", ls="--", lw=1, label="reference mean")
        ax.axhline(0.4 * e["reference mean"], color="gray", ls=":", lw=1, label="0.4 x reference mean")
        ax.set_title(name)
        ax.set_xlabel("compute seconds (CPU s / threads)")
        ax.set_ylabel("best L1 loss")
        best_base = min(e["naive"], e["persona"], e["icl"])
        cells = [" / ".join(f"{r['best_loss']:.1f} ({r['steps']})" for r in per.get(m, [])) or "-" for m in methods]
        # align's default schedule: the adam curve passes through its last step (same configuration, deterministic)
        default = [r["curve"][DEFAULT_STEPS - 1] for r in per.get("adam", []) if len(r["curve"]) >= DEFAULT_STEPS]
        if default:
            d = default[0]
            cells.append(f"{d[2]:.1f} ({d[2] / e['reference mean']:.2f}; {d[0] / 60:.1f} / {d[3] / 60:.1f} min)")
            cells.append("yes" if d[2] < best_base else "no")
        else:
            cells += ["-", "-"]
        blackbox = [r["minutes"] for m in ("cma", "de") for r in per.get(m, [])]
        cells.append(" / ".join(f"{loss_at(r, min(blackbox) * 60):.1f}" for r in per.get("adam", []))
                     if blackbox and "adam" in per else "-")
        rows.append(f"| {name} | {e['start']['prefix']:.1f} / {e['start']['suffix']:.1f} | {e['naive']:.1f} | "
                    f"{e['persona']:.1f} | {e['icl']:.1f} | {e['reference mean']:.1f} | " + " | ".join(cells) + " |")
        plain = e["plain"]
        for r in [e_ for m in methods for e_ in per.get(m, [])]:
            h = r["held_out"]
            gain_train = plain["training"] - h["training"]
            gain_re = plain["reworded"] - h["reworded"]
            robust_rows.append(
                f"| {name} | {r['method']} {r['seed']} | {plain['training']:.1f} -> {h['training']:.1f} | "
                f"{plain['forward order only']:.1f} -> {h['forward order only']:.1f} | "
                f"{plain['reverse order only']:.1f} -> {h['reverse order only']:.1f} | "
                f"{plain['reworded']:.1f} -> {h['reworded']:.1f} | "
                f"{gain_re / gain_train if gain_train > 0 else float('nan'):.2f} | "
                f"{plain.get('culturalbench', float('nan')):.2f} -> {h.get('culturalbench', float('nan')):.2f} |")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    figure = ROOT / "benchmarks" / "figures" / f"gradient-default{'-quick' if quick else ''}.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    labels = "; ".join(f"`{m}`: {METHODS[m][0]}" for m in methods)
    minutes = {m: [r["minutes"] for e in results["countries"].values() for r in e["runs"] if r["method"] == m]
               for m in methods}
    body = [f"### Gradient vs black-box at equal compute on `default`{' (quick)' if quick else ''}",
            "", *(f"Command: `{c}`  " for c in results["commands"]), f"Machine: {results['machine']}  ",
            "Each run: the minutes of compute in its column's header (CPU time of the process divided by torch's "
            "threads: wall clock on an idle machine, and the same for every method when other work shares the cores) "
            "from the same start (the soft prompt initialised from "
            "\"You are a person from <country>.\", 8 tokens; the start's loss is shown per placement), naive prompt, "
            f"anchored constants (leave-one-out for anchor countries), both option orders. Methods: {labels}. Cells: "
            "best true L1 loss (index points) and, in brackets, the gradient steps or black-box generations done.",
            "", "| country | start prefix / suffix | naive | persona | ICL | reference mean | "
            + " | ".join(f"{m} ({max(minutes[m]):g} min)" for m in methods)
            + f" | `align` default ({DEFAULT_STEPS} Adam steps; / reference mean; compute / wall min) "
            "| default below naive, persona, ICL | adam at the black-box runs' compute |",
            "|---|---|---|---|---|---|" + "---|" * len(methods) + "---|---|---|",
            *rows, "", f"![loss against seconds]({figure.relative_to(ROOT)})", "",
            "Held-out checks of each final prompt (loss without -> with the soft prompt, the same constants): each option "
            "order alone, a reworded questionnaire (vsm2013-reworded), the share of the training gain "
            "kept on the rewording, and CulturalBench-Hard question accuracy:", "",
            "| country | run | training survey | forward order only | reverse order only | reworded items | "
            "reworded gain / training gain | CulturalBench |", "|---|---|---|---|---|---|---|---|", *robust_rows]
    write_section("gradient-default" + ("-quick" if quick else ""), "\n".join(body))


if __name__ == "__main__":
    main()
