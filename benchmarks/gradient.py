"""Gradient against black-box alignment at equal wall-clock cost on the default model.

For each country: the start (the soft prompt at its initialisation, z = 0, shared by every method: same init text,
same seed-independent start), the naive, persona and ICL prompts and the reference-mean predictor; then each method
runs for the same number of seconds from that start: ``adam`` (gradients, align's gradient optimiser), ``cma``
(align's black-box default, 64-dim subspace) and ``de`` (the paper-faithful setting: DE in the full embedding space).
Every run records its best loss against seconds and against forward-pass equivalents, so one curve gives every
smaller budget. Each final prompt is then measured with each option order alone, on a reworded questionnaire
(examples/vsm2013-reworded.json) and on CulturalBench-Hard questions about the country, to show whether it overfits
the wording or the option positions. Black-box runs share nothing with each other (their own seeds).

Usage:  python benchmarks/gradient.py [--countries US,CN,IN,SA] [--minutes 10] [--runs adam:2,cma:2,de:1] [--quick]
Writes a section of BENCHMARKS.md, benchmarks/figures/gradient-default.png and benchmarks/results/gradient-default.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, command, machine, write_section

from culturealign.align import AlignConfig, make_alignment
from culturealign.culturalbench import culturalbench_metrics, load_culturalbench, score_judgements
from culturealign.errors import CultureAlignError
from culturealign.evaluation import robustness
from culturealign.measure import MeasureConfig, Session
from culturealign.softprompt import SoftPrompt, SoftPromptConfig, initial_embeddings
from culturealign.targets import lookup

REWORDED = ROOT / "examples" / "vsm2013-reworded.json"
METHODS = {  # name: (label, AlignConfig fields, SoftPromptConfig fields)
    "adam": ("Adam (gradient), lr 0.01", dict(optimizer="adam", lr=0.01), dict()),
    "cma": ("CMA-ES, 64-dim subspace (black-box default)", dict(optimizer="cma"), dict(space="subspace")),
    "de": ("DE, full space (paper)", dict(optimizer="de"), dict(space="full")),
}


def timed_run(session: Session, country: str, method: str, seed: int, seconds: float, placement: str,
              run_dir: Path) -> dict:
    """One alignment for ``seconds`` of wall clock; the curve (seconds, forward equivalents, best loss)."""
    _, fields, soft_fields = METHODS[method]
    cfg = AlignConfig(country=country, seed=seed, budget=10 ** 6, steps=10 ** 6,
                      soft=SoftPromptConfig(placement=placement, **soft_fields), measure=session.config, **fields)
    run = make_alignment(cfg, run_dir, session=session)
    start = time.perf_counter()
    curve = []
    while time.perf_counter() - start < seconds:
        row = run.step()
        curve.append((time.perf_counter() - start, row["forward_equivalents"], row["best_loss"]))
    run.state.elapsed = time.perf_counter() - start
    run.save_best()
    run.write_run("finished")
    return {"method": method, "seed": seed, "curve": curve, "best_loss": run.state.best_loss,
            "steps": run.state.generation, "evaluations": run.state.evaluations}


def held_out(session: Session, run_dir: Path, country, cb_limit: int) -> dict:
    """The run's prompt with each order alone, on the reworded items (with and without the prompt), on
    CulturalBench."""
    rob = robustness(run_dir, REWORDED)
    out = {c["condition"]: {"loss": c["loss"], "plain_loss": c["plain_loss"]} for c in rob["conditions"]}
    if cb_limit:
        try:
            judgements = load_culturalbench(country.name, cb_limit)
        except CultureAlignError:
            judgements = []
        if judgements:
            prompt = SoftPrompt.load(run_dir)
            out["culturalbench"] = culturalbench_metrics(judgements, score_judgements(
                session.lm, judgements, None, prompt, session.config.batch_size))["question_accuracy"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--countries", default="US,CN,IN,SA")
    ap.add_argument("--minutes", type=float, default=10.0, help="wall clock per run")
    ap.add_argument("--runs", default="adam:2,cma:2,de:1", help="method:seeds,...")
    ap.add_argument("--placement", default="prefix")
    ap.add_argument("--culturalbench", type=int, default=20, help="CulturalBench questions per country (0: skip)")
    ap.add_argument("--quick", action="store_true", help="U.S.A., 1 minute per run, one seed each")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gradient-default.json"))
    args = ap.parse_args()
    if args.quick:
        args.countries, args.minutes, args.runs, args.culturalbench = "US", 1.0, "adam:1,cma:1", 5
    runs = [(m, int(n)) for m, n in (x.split(":") for x in args.runs.split(","))]
    session = Session(MeasureConfig())
    results = {"command": command(), "machine": machine(), "minutes": args.minutes, "placement": args.placement,
               "countries": {}}
    out_path = Path(args.out if not args.quick else str(args.out).replace(".json", "-quick.json"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gradient-bench-"))
    for code in args.countries.split(","):
        country = lookup(code)
        objective = session.objective(country)
        emb = session.lm.model.get_input_embeddings()
        p0 = initial_embeddings(SoftPromptConfig(), emb, session.lm.tokenizer, country.name, 0)
        start = float(objective.loss(session.survey("naive", country).answer(p0[None], args.placement).expected)[0])
        entry = {"start": start, "reference mean": objective.reference_mean_loss(),
                 **{s: session.measure(country, s)["loss"] for s in ("naive", "persona", "icl")}, "runs": []}
        print(f"{country.name}: start {start:.1f}, reference mean {entry['reference mean']:.1f}", flush=True)
        for method, seeds in runs:
            for seed in range(seeds):
                run_dir = tmp / f"{code}-{method}-{seed}"
                res = timed_run(session, country.name, method, seed, args.minutes * 60, args.placement, run_dir)
                res["held_out"] = held_out(session, run_dir, country, args.culturalbench)
                entry["runs"].append(res)
                print(f"  {method} seed {seed}: {res['best_loss']:.1f} after {res['steps']} steps "
                      f"({res['evaluations']} evaluations)", flush=True)
                results["countries"][country.name] = entry
                out_path.write_text(json.dumps(results, indent=1))
    write_report(results, quick=args.quick)


def write_report(results: dict, quick: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["countries"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    colors = {"adam": "tab:red", "cma": "tab:blue", "de": "tab:green"}
    rows, robust_rows = [], []
    for ax, name in zip(axes[0], names):
        e = results["countries"][name]
        for r in e["runs"]:
            t, _, best = zip(*r["curve"]) if r["curve"] else ((), (), ())
            ax.step([0, *t], [e["start"], *best], where="post", color=colors[r["method"]], alpha=0.8,
                    label=f"{r['method']} seed {r['seed']}")
        ax.axhline(e["reference mean"], color="gray", ls="--", lw=1, label="reference mean")
        ax.axhline(0.4 * e["reference mean"], color="gray", ls=":", lw=1, label="0.4 x reference mean")
        ax.set_title(name)
        ax.set_xlabel("seconds")
        ax.set_ylabel("best L1 loss")
        per = {}
        for r in e["runs"]:
            per.setdefault(r["method"], []).append(r)
        cells = []
        for m in ("adam", "cma", "de"):
            rs = per.get(m, [])
            cells.append(" / ".join(f"{r['best_loss']:.1f}" for r in rs) if rs else "-")
        best_base = min(e["naive"], e["persona"], e["icl"])
        rows.append(f"| {name} | {e['start']:.1f} | {e['naive']:.1f} | {e['persona']:.1f} | {e['icl']:.1f} | "
                    f"{e['reference mean']:.1f} | " + " | ".join(cells) + " | "
                    + " / ".join(f"{r['best_loss'] / e['reference mean']:.2f}" for r in per.get("adam", []))
                    + " | " + ("yes" if all(r["best_loss"] < best_base for r in per.get("adam", [])) else "no") + " |")
        for r in e["runs"]:
            h = r["held_out"]
            train = h["training"]
            reworded = next((v for k, v in h.items() if k.startswith("questionnaire")), None)
            gain_train = train["plain_loss"] - train["loss"]
            gain_re = reworded["plain_loss"] - reworded["loss"] if reworded else float("nan")
            fwd, rev = h.get("forward order only"), h.get("reverse order only")
            robust_rows.append(
                f"| {name} | {r['method']} {r['seed']} | {train['plain_loss']:.1f} -> {train['loss']:.1f} | "
                f"{fwd['plain_loss']:.1f} -> {fwd['loss']:.1f} | {rev['plain_loss']:.1f} -> {rev['loss']:.1f} | "
                f"{reworded['plain_loss']:.1f} -> {reworded['loss']:.1f} | "
                f"{gain_re / gain_train if gain_train > 0 else float('nan'):.2f} | "
                f"{h['culturalbench'] if 'culturalbench' in h else float('nan'):.2f} |")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    figure = ROOT / "benchmarks" / "figures" / f"gradient-default{'-quick' if quick else ''}.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    body = [f"### Gradient vs black-box at equal wall clock on `default`{' (quick)' if quick else ''}",
            "", f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
            f"Each run: {results['minutes']:g} min of wall clock from the same start (the soft prompt initialised from "
            f"\"You are a person from <country>.\", {results['placement']} placement, 8 tokens), naive prompt, "
            "anchored constants, both option orders. Losses are the true L1 (index points); seeds separated by /.",
            "", "| country | start (z = 0) | naive | persona | ICL | reference mean | Adam | CMA-ES | DE (paper) | "
            "Adam / reference mean | Adam below naive, persona, ICL |", "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows, "", f"![loss against seconds]({figure.relative_to(ROOT)})", "",
            "Held-out checks of each final prompt (loss without -> with the soft prompt, same constants): each option "
            "order alone, a reworded questionnaire, the share of the training gain kept on the rewording, and "
            "CulturalBench-Hard question accuracy with the prompt:", "",
            "| country | run | training survey | forward order only | reverse order only | reworded items | "
            "reworded gain / training gain | CulturalBench |", "|---|---|---|---|---|---|---|---|", *robust_rows]
    write_section("gradient-default" + ("-quick" if quick else ""), "\n".join(body))


if __name__ == "__main__":
    main()
