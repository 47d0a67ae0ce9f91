"""Compute-optimal gradient settings, chosen on a validation country: validation loss against compute and seconds
for a few step sizes, row budgets (``--rows-per-step``) and schedules, and early stopping on validation.

Every run is `align`'s default but for the settings its name lists, from the same start (seed 0: the text "You
are a person from <country>.") on a validation country (default Germany: never a headline country). Each run's
history gives its validation curve (the validation wording, per-order, every 5 steps) against

- *compute*: forward-pass equivalents (a backward pass counts 2), the training steps' and the validations' together
  (deterministic, the same on any machine);
- *wall seconds* on this machine (noisy: compare ratios within one run of this script).

Early stopping is read off each history: with patience ``p`` the run stops after ``p`` validations without a new
best, and keeps the best so far (the trajectory up to there does not depend on ``p``). The kept prompt of each
setting is then scored on the test wording (`vsm2013-test`), reported only: nothing here is chosen on it.

The *target* is the validation loss that `align`'s current default (every row, lr 0.02 cosine, 40 steps) keeps; a
setting's *time to target* is the compute (and seconds) at its first validation at or below it.

Usage:  python benchmarks/schedules.py [--country DE] [--runs NAME,...] [--threads 1] [--out FILE]
        python benchmarks/schedules.py --merge A.json B.json        join results made in parallel, write the table
        python benchmarks/schedules.py --report-only
Run names: ``rows<N|all>-<cosine|constant|warmup>-lr<LR>-<STEPS>``, e.g. ``rows24-cosine-lr0.02-80``.
Writes the "schedules" section of BENCHMARKS.md and benchmarks/results/schedules.json (each run's full AlignConfig,
history and scores).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from common import ROOT, command, early_stop, machine, validation_points, write_section

from culturealign.align import align
from culturealign.config import TEST_WORDING, VALIDATION_WORDING, AlignConfig, MeasureConfig
from culturealign.session import Session
from culturealign.softprompt import SoftPrompt
from culturealign.targets import lookup

RESULTS = ROOT / "benchmarks" / "results" / "schedules.json"
FIGURE = ROOT / "benchmarks" / "figures" / "schedules.png"
DEFAULT_RUN = "rowsall-cosine-lr0.02-40"
RUNS = (DEFAULT_RUN, "rows24-cosine-lr0.02-40", "rows24-cosine-lr0.02-80", "rowsall-cosine-lr0.05-40",
        "rows24-constant-lr0.02-80")
PATIENCE = (None, 1, 2, 3)


def settings(name: str) -> dict:
    """The AlignConfig fields a run name sets: ``rows24-cosine-lr0.02-80``."""
    rows, schedule, lr, steps = name.split("-")
    return {"rows_per_step": None if rows == "rowsall" else int(rows[len("rows"):]), "schedule": schedule,
            "lr": float(lr[len("lr"):]), "steps": int(steps)}


def curve(run: dict) -> list[dict]:
    """The validation points of a run (:func:`common.validation_points`) with their compute: forward equivalents of
    the steps and of the validations so far."""
    points = validation_points(run["history"])
    for n, point in enumerate(points, 1):
        point["compute"] = point["forward_equivalents"] + n * run["validation_cost"]
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--country", default="DE")
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (two scripts side by side: 1 each)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--merge", nargs="+", metavar="RESULTS")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--from-heldout", action="store_true",
                    help="take the validation country's runs that benchmarks/heldout.py --role validation made")
    args = ap.parse_args()
    if args.from_heldout:
        args.merge = [str(_from_heldout())]
    if args.report_only or args.merge:
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"commands": [], "runs": []}
        for other in (json.loads(Path(p).read_text()) for p in args.merge or []):
            results.setdefault("machine", other["machine"])
            results["commands"] += [c for c in other["commands"] if c not in results["commands"]]
            have = {(r["country"], r["name"]) for r in results["runs"]}
            results["runs"] += [r for r in other["runs"] if (r["country"], r["name"]) not in have]
        RESULTS.write_text(json.dumps(results, indent=1))
        write_report(results)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {"commands": [], "runs": []}
    results["machine"], results["commands"] = machine(), results["commands"] + [command()]
    session = Session(MeasureConfig())
    session.resolve_constants()
    wordings = {"validation": session.with_questionnaire(VALIDATION_WORDING),
                "test": session.with_questionnaire(TEST_WORDING)}
    country = lookup(args.country)
    tmp = Path(tempfile.mkdtemp(prefix="schedules-bench-"))
    for name in args.runs.split(","):
        if any(r["name"] == name and r["country"] == country.name for r in results["runs"]):
            continue
        # the whole run: early stopping is read off the history (equal compute for every setting)
        config = AlignConfig(country=country.name, seed=0, patience=None, measure=session.config, **settings(name))
        t0 = time.perf_counter()
        align(config, tmp / name, session=session, on_generation=lambda run, row: print(
            f"  {name}: step {row['generation']} loss {row['loss']:.1f} val {row['validation_loss'] or '-'}",
            flush=True))
        wall = time.perf_counter() - t0
        prompt = SoftPrompt.load(tmp / name)
        test = {}
        for role, wording in wordings.items():
            answers = wording.survey("naive", country).answer(prompt.embeddings[None], prompt.placement)
            test[role] = float(wording.objective(country).survey_loss(answers.expected_by_order, "per-order")[0])
        n_rows = len(session.survey("naive", country).rows)
        results["runs"].append({
            "name": name, "country": country.name, "config": config.to_dict(), "wall_s": wall,
            # one validation: a forward pass over the validation wording's rows, in training-step row units
            "validation_cost": len(wordings["validation"].survey("naive", country).rows) / n_rows,
            "history": (tmp / name / "history.csv").read_text(), "kept": test})
        print(f"{name}: validation {test['validation']:.1f}, test {test['test']:.1f}, {wall / 60:.1f} min", flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1))
    if out_path == RESULTS:
        write_report(results)


def _from_heldout() -> Path:
    """benchmarks/heldout.py's validation-country runs (same settings as named here) as a results file to merge."""
    from heldout import VALIDATION_RESULTS

    held = json.loads(VALIDATION_RESULTS.read_text())
    runs = []
    for country, entry in held["countries"].items():
        for r in entry["runs"]:
            cfg = r["config"]
            rows = "rowsall" if cfg["rows_per_step"] is None else f"rows{cfg['rows_per_step']}"
            runs.append({"name": f"{rows}-{cfg['schedule']}-lr{cfg['lr']:g}-{cfg['steps']}", "country": country,
                         "config": cfg, "wall_s": r["wall_s"], "validation_cost": 1.0, "history": r["history"],
                         "kept": {role: r["final"][role]["per_order"] for role in ("validation", "test")}})
    out = Path(tempfile.mkdtemp(prefix="schedules-heldout-")) / "heldout.json"
    out.write_text(json.dumps({"machine": held["machine"], "runs": runs, "commands": [
        *held["commands"], command()]}))
    return out


def plot(results: dict, path: Path) -> None:
    """Validation loss against compute (a share of the default's whole run), one line per setting and country."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    countries = list(dict.fromkeys(r["country"] for r in results["runs"]))
    fig, axes = plt.subplots(1, len(countries), figsize=(6.5 * len(countries), 4.2), squeeze=False)
    for ax, country in zip(axes[0], countries):
        runs = [r for r in results["runs"] if r["country"] == country]
        base = next((curve(r)[-1]["compute"] for r in runs if r["name"] == DEFAULT_RUN), None)
        for r in runs:
            points = curve(r)
            ax.plot([p["compute"] / (base or 1) for p in points], [p["validation"] for p in points], marker="o",
                    ms=3, lw=2.5 if r["name"] == DEFAULT_RUN else 1.2, label=r["name"])
        ax.set_title(f"{country}: validation wording, per-order loss")
        ax.set_xlabel("compute (share of the default's 40 full steps)" if base else "compute (forward equivalents)")
        ax.set_ylabel("validation loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict) -> None:
    plot(results, FIGURE)
    lines = []
    for country in dict.fromkeys(r["country"] for r in results["runs"]):
        runs = {r["name"]: r for r in results["runs"] if r["country"] == country}
        if DEFAULT_RUN not in runs:
            continue
        target = early_stop(curve(runs[DEFAULT_RUN]), None)["kept"]["validation"]
        base = curve(runs[DEFAULT_RUN])[-1]
        for name, run in runs.items():
            points = curve(run)
            reach = next((p for p in points if p["validation"] <= target + 1e-9), None)
            reached = ("not reached" if reach is None else
                       f"{reach['compute'] / base['compute']:.2f} (step {reach['step']})")
            stops = []
            for patience in PATIENCE:
                s = early_stop(points, patience)
                stops.append(f"{s['kept']['validation']:.1f} @ {s['stop']['compute'] / base['compute']:.2f}")
            cfg = settings(name)
            lines.append(
                f"| {country} | {'every row' if cfg['rows_per_step'] is None else cfg['rows_per_step']} | "
                f"{cfg['schedule']} | {cfg['lr']:g} | {cfg['steps']} | **{run['kept']['validation']:.1f}** | "
                f"{run['kept']['test']:.1f} | {early_stop(points, None)['kept']['step']} | {reached} | "
                f"{run['wall_s'] / 60:.0f} | "
                + " | ".join(stops) + " | " + " ".join(f"{p['step']}:{p['validation']:.1f}" for p in points) + " |")
    body = ["### Compute-optimal gradient settings, chosen on a validation country", "",
            *(f"Command: `{c}`  " for c in results["commands"]), f"Machine: {results.get('machine', '?')}  ",
            "Each run is `align`'s default but for its rows a step, schedule, learning rate and steps, from the same "
            "start (seed 0, the text start); validation every 5 steps and at the last. *Compute* counts forward-pass "
            "equivalents (backward = 2) of the steps and validations, as a share of the default's whole run (every "
            "row, cosine, lr 0.02, 40 steps): the same on any machine. *Wall min*: the run's minutes on one torch "
            "thread beside another run (runs made at different times and code states: not comparable, compute is). "
            "*Target*: the validation loss the default keeps; *to target*: the compute share at the first "
            "validation at or below it. *Patience p*: stop after p validations without a new best (read off the "
            "history: kept validation loss @ compute share at the stop). Test is `vsm2013-test`, scored on the "
            "prompt the full run keeps, reported only. Full configs and histories: benchmarks/results/"
            "schedules.json.", "",
            "| country | rows a step | schedule | lr | steps | **validation (kept)** | test (kept) | kept step | to "
            "target: compute | wall min | patience none | patience 1 | patience 2 | patience 3 | validation curve "
            "(step:loss) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", *lines, "",
            f"![validation loss against compute](figures/{FIGURE.name})"]
    write_section("schedules", "\n".join(body))


if __name__ == "__main__":
    main()
