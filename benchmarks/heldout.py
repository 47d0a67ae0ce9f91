"""Held-out alignment on the default model: `align`'s default (per-order objective, validation wording picks the
prompt) against the earlier `pooled` objective, from the same start at equal compute, scored where nothing was
tuned.

For each country and objective, one `align` run with every other setting at its default (40 Adam steps, the prompt
best on the validation wording `vsm2013-validation` kept). Each saved prompt, the run's start (the soft prompt at
its initialisation) and the naive, persona and ICL prompts are then scored, under the run's constants, on

- the training wording (`vsm2013`): the pooled loss (orders averaged first) and the per-order loss;
- the validation wording: the per-order loss (what picked the prompt);
- the test wording (`vsm2013-test`): each option order alone and their mean, the held-out figure; nothing is chosen
  on it;
- CulturalBench-Hard questions about the country (question accuracy).

Baselines that need no model: the reference-mean predictor C (the model's indices at the anchored constants: a
model-dependent constant) and the mean of the other countries' published scores (leave-one-out, model-free).

Usage:  python benchmarks/heldout.py [--countries US,CN,IN,SA] [--objectives per-order,pooled] [--seeds 1]
        [--threads 1] [--out FILE]                 runs (each a full `align` run) and their held-out scores
        python benchmarks/heldout.py --merge A.json B.json      join results made in parallel, write the tables
        python benchmarks/heldout.py --report-only
Writes the "heldout-default" section of BENCHMARKS.md, the README's main table (between its markers) and
benchmarks/results/heldout-default.json (each run's full AlignConfig, history and scores).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import ROOT, command, culturalbench_accuracy, early_stop, machine, validation_points, write_section

from culturealign.config import AlignConfig
from culturealign.align import align
from culturealign.comparison import published_mean_loss
from culturealign.config import AUTO_PATIENCE_VALIDATIONS, TEST_WORDING, VALIDATION_WORDING
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.softprompt import SoftPrompt, initial_embeddings
from culturealign.targets import lookup

RESULTS = ROOT / "benchmarks" / "results" / "heldout-default.json"
#: countries that choose settings (the step's rows, the objective): their own file and section, never the README's
VALIDATION_RESULTS = ROOT / "benchmarks" / "results" / "heldout-validation-countries.json"
STYLES = ("naive", "persona", "icl")


def scores(wordings: dict[str, Session], country, style: str, soft: torch.Tensor | None, placement: str,
           cb_limit: int) -> dict:
    """Losses of one prompt (``soft`` (n_tokens, hidden) or None) under ``style`` on every wording: pooled,
    per-order and each order alone; and CulturalBench question accuracy."""
    out = {}
    for role, session in wordings.items():
        objective = session.objective(country)
        answers = session.survey(style, country).answer(None if soft is None else soft[None], placement)
        by_order = answers.expected_by_order                       # (1, n_orders, n_items)
        out[role] = {"pooled": float(objective.survey_loss(by_order, "pooled")[0]),
                     "per_order": float(objective.survey_loss(by_order, "per-order")[0]),
                     **{o: float(objective.loss(by_order[:, i])[0]) for i, o in enumerate(answers.orders)}}
    accuracy = culturalbench_accuracy(wordings["training"].backend, country.name,
                                      None if soft is None else SoftPrompt(soft, placement, {}), cb_limit) if cb_limit else None
    if accuracy is not None:
        out["culturalbench"] = accuracy
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--countries", default="US,CN,IN,SA")
    ap.add_argument("--objectives", default="per-order,pooled")
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (0: the text start; >0: text plus noise)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (two runs side by side: 1 each)")
    ap.add_argument("--rows-per-step", type=int, default=None, help="stochastic steps (align --rows-per-step)")
    ap.add_argument("--culturalbench", type=int, default=20)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--merge", nargs="+", metavar="RESULTS")
    ap.add_argument("--role", choices=("test", "validation"), default="test",
                    help="--merge/--report-only: the headline countries (README) or the validation countries")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    out_path = Path(args.out)
    if args.report_only or args.merge:
        target = VALIDATION_RESULTS if args.role == "validation" else RESULTS
        results = json.loads(target.read_text()) if target.exists() else {"commands": [], "countries": {}}
        for other in (json.loads(Path(p).read_text()) for p in args.merge or []):
            results.setdefault("machine", other["machine"])
            results["commands"] += [c for c in other["commands"] if c not in results["commands"]]
            for name, entry in other["countries"].items():
                mine = results["countries"].setdefault(name, {**entry, "runs": []})
                keys = {_key(r) for r in mine["runs"]}
                mine["runs"] += [r for r in entry["runs"] if _key(r) not in keys]
        target.write_text(json.dumps(results, indent=1))
        write_report(results, args.role)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    session = Session(MeasureConfig())
    session.resolve_constants()
    wordings = {"training": session, "validation": session.with_questionnaire(VALIDATION_WORDING),
                "test": session.with_questionnaire(TEST_WORDING)}
    results = json.loads(out_path.read_text()) if out_path.exists() else {"commands": [], "countries": {}}
    results["machine"] = machine()
    results["commands"].append(command())
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="heldout-bench-"))
    for code in args.countries.split(","):
        country = lookup(code)
        entry = results["countries"].get(country.name)
        if entry is None:
            t0 = time.perf_counter()
            entry = {"reference mean": session.objective(country).reference_mean_loss(),
                     "published mean": published_mean_loss(country, session.targets, session.dimensions),
                     **{s: scores(wordings, country, s, None, "prefix", args.culturalbench if s == "naive" else 0)
                        for s in STYLES},
                     "runs": [], "baseline_seconds": time.perf_counter() - t0}
        for seed in range(args.seeds):
            for objective in args.objectives.split(","):
                if any(_key(r) == (objective, seed, args.rows_per_step) for r in entry["runs"]):
                    continue
                # every step (equal compute for both objectives); the default's early stop is read off the history
                config = AlignConfig(country=country.name, objective=objective, seed=seed, patience=None,
                                     rows_per_step=args.rows_per_step, measure=session.config)
                run_dir = tmp / f"{code}-{objective}-{seed}-{args.rows_per_step}"
                t0, cpu0 = time.perf_counter(), time.process_time()
                record = align(config, run_dir, session=session,
                               on_generation=lambda run, row: print(
                                   f"  {country.name} {objective} {seed}: step {row['generation']} loss "
                                   f"{row['loss']:.1f} val {row['validation_loss'] or '-'}", flush=True))
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                p0 = initial_embeddings(config.soft, session.backend, session.backend.tokenizer, country.name, seed)
                prompt = SoftPrompt.load(run_dir)
                history = (run_dir / "history.csv").read_text()
                entry["runs"].append({
                    "objective": objective, "seed": seed, "rows_per_step": args.rows_per_step,
                    "config": config.to_dict(), "wall_s": wall,
                    "compute_s": cpu / torch.get_num_threads(), "best_generation": record["best"]["generation"],
                    "start": scores(wordings, country, "naive", p0, config.soft.placement, 0),
                    "final": scores(wordings, country, "naive", prompt.embeddings, prompt.placement, args.culturalbench),
                    "history": history})
                r = entry["runs"][-1]
                print(f"{country.name} {objective} seed {seed}: test per-order {r['start']['test']['per_order']:.1f} "
                      f"-> {r['final']['test']['per_order']:.1f}, training {r['final']['training'][objective.replace('-', '_')]:.1f} "
                      f"(step {r['best_generation']}), {wall / 60:.1f} min", flush=True)
                results["countries"][country.name] = entry
                out_path.write_text(json.dumps(results, indent=1))
    if out_path == RESULTS:
        write_report(results)


def _key(run: dict) -> tuple:
    return run["objective"], run["seed"], run.get("rows_per_step")


def _label(run: dict) -> str:
    rows = run.get("rows_per_step")
    return run["objective"] + (f", {rows} rows a step" if rows else "")


def _gain_kept(run: dict) -> str:
    """The share of the per-order training gain (start -> final) kept on the test wording, per-order; "no gain"
    where the kept prompt did not lower the training per-order loss at all."""
    train = run["start"]["training"]["per_order"] - run["final"]["training"]["per_order"]
    test = run["start"]["test"]["per_order"] - run["final"]["test"]["per_order"]
    return f"{test / train:.2f}" if train > 0 else "no gain"


def stopped_early(run: dict) -> str:
    """What ``--patience auto`` (3 validations without a new best; the runs here went every step) would have done
    to this run, read off its history: the step it stops at and whether it keeps the same prompt."""
    points = validation_points(run["history"])
    stop = early_stop(points, AUTO_PATIENCE_VALIDATIONS)
    same = stop["kept"]["step"] == early_stop(points, None)["kept"]["step"]
    return f"step {stop['stop']['step']} ({'same prompt' if same else 'keeps step %d' % stop['kept']['step']})"


def write_report(results: dict, role: str = "test") -> None:
    rows, readme, detail, early = [], [], [], []
    for name, e in results["countries"].items():
        ref = e["reference mean"]
        best_base = min(e[s]["test"]["per_order"] for s in STYLES)
        runs = {r["objective"]: r for r in e["runs"] if r["seed"] == 0 and not r.get("rows_per_step")}
        for r in sorted(e["runs"], key=lambda r: (r["objective"] != "per-order", r.get("rows_per_step") or 0,
                                                  r["seed"])):
            f, s = r["final"], r["start"]
            if r["objective"] == "per-order" and not r.get("rows_per_step"):
                early.append(f"{name} {stopped_early(r)}")
            detail.append(
                f"| {name} | {_label(r)} | {r['seed']} | {s['test']['per_order']:.1f} -> **{f['test']['per_order']:.1f}** "
                f"({f['test']['per_order'] / ref:.2f}) | {s['test']['forward']:.1f} -> {f['test']['forward']:.1f} | "
                f"{s['test']['reverse']:.1f} -> {f['test']['reverse']:.1f} | {_gain_kept(r)} | "
                f"{s['validation']['per_order']:.1f} -> {f['validation']['per_order']:.1f} | "
                f"{s['training']['per_order']:.1f} -> {f['training']['per_order']:.1f} | "
                f"{s['training']['pooled']:.1f} -> {f['training']['pooled']:.1f} | {r['best_generation']} | "
                f"{'yes' if f['test']['per_order'] < best_base else 'no'} | "
                f"{e['naive'].get('culturalbench', float('nan')):.2f} -> {f.get('culturalbench', float('nan')):.2f} | "
                f"{r['compute_s'] / 60:.1f} / {r['wall_s'] / 60:.1f} |")
        base = " | ".join(f"{e[s]['test']['per_order']:.1f}" for s in STYLES)
        rows.append(f"| {name} | {base} | {ref:.1f} | {e['published mean']:.1f} |")
        default, pooled = runs.get("per-order"), runs.get("pooled")
        cell = (lambda r: "-" if r is None else f"{r['final']['test']['per_order']:.1f} "
                f"({r['final']['test']['per_order'] / ref:.2f})")
        train = (lambda r: "-" if r is None else f"{r['final']['training']['per_order']:.1f} / "
                 f"{r['final']['training']['pooled']:.1f}")
        start = (default or pooled)
        readme.append(f"| {name} | {start['start']['test']['per_order']:.1f} | {base} | {ref:.1f} | "
                      f"{e['published mean']:.1f} | **{cell(default)}** | {train(default)} | "
                      f"{'-' if default is None else _gain_kept(default)} | {cell(pooled)} | {train(pooled)} |")
    body = ["### Held-out alignment on `default`: per-order objective and validation, against pooled", "",
            *(f"Command: `{c}`  " for c in results["commands"]), f"Machine: {results.get('machine', '?')}  ",
            "Every run is `align`'s default (40 Adam steps, lr 0.02 cosine, clipped to norm 1, Huber surrogate, 8 "
            "prefix tokens from \"You are a person from <country>.\", naive prompt, anchored constants with the "
            "target left out, both option orders) with the objective in its row; the prompt kept is the one best on "
            "the validation wording (`vsm2013-validation`, per-order, every 5 steps: the step in 'kept step'). Seed 0 "
            "starts at the text itself, so both objectives start from the same prompt and spend the same 40 steps. "
            "Scores: L1 loss over the six dimensions, under the run's constants. **Test** is `vsm2013-test`, a "
            "wording nothing was tuned or chosen on, each option order scored alone and averaged; start -> final. "
            "'kept': the share of the per-order training gain kept on the test wording ('no gain': the kept prompt's per-order training loss is not below the start's). 'below prompts': test "
            "per-order loss below naive, persona and ICL prompting. Each run's full AlignConfig and history are in "
            "benchmarks/results/heldout-default.json.", "",
            "Prompting baselines and model-free predictors, test wording, per-order loss:", "",
            "| country | naive | persona | ICL | reference mean C (model's constants) | published mean (leave-one-out) |",
            "|---|---|---|---|---|---|", *rows, "",
            "| country | objective | seed | **test, per-order** (/ reference mean) | test, forward only | test, reverse "
            "only | kept | validation, per-order | training, per-order | training, pooled | kept step | below "
            "prompts | CulturalBench naive -> final | compute / wall min |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", *detail, "",
            "These runs went every step, so that both objectives spend the same compute. `align`'s default now stops "
            f"after {AUTO_PATIENCE_VALIDATIONS} validations without a new best (`--patience auto`); read off each "
            "per-order run's history, it would stop at: " + "; ".join(early) + "."]
    if role == "validation":
        body[0] = "### Validation countries: where settings are chosen (not the headline)"
        body = [line.replace("benchmarks/results/heldout-default.json", "benchmarks/results/"
                             "heldout-validation-countries.json") for line in body]
        write_section("heldout-validation", "\n".join(body))
        return
    write_section("heldout-default", "\n".join(body))
    write_section("main-table", "\n".join([
        "| country | start | naive | persona | ICL | reference mean C | published mean | **`align` default "
        "(per-order): test** (/ C) | its training per-order / pooled | test gain / training gain | pooled "
        "objective: test (/ C) | its training per-order / pooled |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|", *readme]), path=ROOT / "README.md")


if __name__ == "__main__":
    main()
