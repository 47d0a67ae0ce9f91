"""Held-out opinions on the default model: does it answer World Values Survey questions like the country's people?

For each country (default: the U.S.A., China, Japan, Mexico) the ``opinions`` evaluation (culturealign/opinions.py:
GlobalOpinionQA's WVS wave-7 questions shipped with the package, non-answers dropped, both option orders) is run
with the naive, persona and ICL prompts and, given run folders, with soft prompts (each under the prompt style it
was trained with). Per run: similarity 1 - JSD to the target on the order-averaged distribution and per order,
specificity, the target's rank among all countries, the three model-free predictors, and the cost.

Usage:  python benchmarks/opinions.py [--countries US,CN,JP,MX] [--limit N]        the baselines
        python benchmarks/opinions.py --add --soft-prompts CN=runs/cn,US=runs/us    add soft prompts later (the
                                                                                    saved baselines are kept)
        python benchmarks/opinions.py --report-only                                 rewrite the table
Writes the section ``opinions-default`` of BENCHMARKS.md and benchmarks/results/opinions-default.json (every run's
full configuration and metrics, each country's similarity included).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import ROOT, command, machine, write_section

from culturealign.evaluations import get_evaluation, run_evaluation
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.softprompt import load_soft_prompt
from culturealign.targets import lookup

SECTION = "opinions-default"
BASELINES = ("naive", "persona", "icl")
LABEL = {"icl": "ICL"}
#: what a saved run keeps of the metrics besides the evaluation's row (its columns, target, every country's similarity)
EXTRA = ("total_variation", "uniform_total_variation", "others_mean_total_variation", "nearest_total_variation",
         "nearest_country", "closest", "order_agreement", "data", "rules")


def run_one(session: Session, country, method: str, limit: int | None, soft_path: str | None = None) -> dict:
    """One evaluation (a baseline, or the soft prompt at ``soft_path`` under its training prompt style), timed, with
    its full configuration."""
    prompt = load_soft_prompt(soft_path, session.backend) if soft_path else None
    style = prompt.metadata.get("prompt", "naive") if prompt else method
    start = time.perf_counter()
    metrics = run_evaluation("opinions", session, country.name, style, prompt, limit)
    seconds = time.perf_counter() - start
    return {"country": country.name, "method": "soft prompt" if prompt else method, "soft_prompt": soft_path,
            "config": {"evaluation": "opinions", "prompt": style, "limit": limit, "measure": session.config.to_dict(),
                       "model": session.provenance(), "torch_threads": torch.get_num_threads(),
                       "soft_prompt": None if prompt is None else {"path": soft_path, "placement": prompt.placement,
                                                                   "n_tokens": int(prompt.embeddings.shape[0]),
                                                                   **prompt.metadata}},
            "metrics": {**get_evaluation("opinions").row(metrics), **{k: metrics.get(k) for k in EXTRA}},
            "seconds": seconds, "seconds_per_question": seconds / metrics["n_questions"]}


def key(entry: dict) -> tuple:
    return entry["country"], entry["method"], entry["soft_prompt"]


def parse_soft_prompts(text: str | None) -> list[tuple[str, str]]:
    """``CN=runs/x,US=runs/y`` -> ``[("CN", "runs/x"), ("US", "runs/y")]``."""
    out = []
    for part in (p.strip() for p in (text or "").split(",") if p.strip()):
        code, sep, path = part.partition("=")
        if not sep or not path:
            raise SystemExit(f"--soft-prompts: {part!r} is not COUNTRY=RUN_FOLDER")
        out.append((code.strip(), path.strip()))
    return out


def _f(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def write_report(results: dict) -> None:
    entries = results["entries"]
    names = list(dict.fromkeys(e["country"] for e in entries))
    order = {m: i for i, m in enumerate((*BASELINES, "soft prompt"))}
    lines = ["| country | method | similarity | forward | reverse | specificity | rank | uniform | others' mean | "
             "nearest country | questions | s / question | s in all |", "|---" * 13 + "|"]
    for name in names:
        for e in sorted((e for e in entries if e["country"] == name), key=lambda e: order[e["method"]]):
            m = e["metrics"]
            method = LABEL.get(e["method"], e["method"])
            if e["soft_prompt"]:
                method += f" (`{e['soft_prompt']}`, {e['config']['prompt']})"
            lines.append(f"| {name} | {method} | **{_f(m['similarity'])}** | {_f(m['similarity_forward'])} | "
                         f"{_f(m['similarity_reverse'])} | {_f(m['specificity'], 3)} | {m['rank']} of "
                         f"{m['n_countries']} | {_f(m['uniform_similarity'])} | {_f(m['others_mean_similarity'])} | "
                         f"{_f(m['nearest_similarity'])} ({m['nearest_country']}) | {m['n_questions']} | "
                         f"{e['seconds_per_question']:.2f} | {e['seconds']:.0f} |")
    limits = sorted({str(e["config"]["limit"]) for e in entries})
    # the goals, per country: the soft prompt raises similarity more than persona, with specificity above 0
    goals = []
    for name in names:
        by = {e["method"]: e["metrics"] for e in entries if e["country"] == name}
        if "soft prompt" in by and "persona" in by and "naive" in by:
            soft, persona, naive = by["soft prompt"], by["persona"], by["naive"]
            gain, persona_gain = soft["similarity"] - naive["similarity"], persona["similarity"] - naive["similarity"]
            met = gain > persona_gain and soft["specificity"] > 0
            goals.append(f"{name}: soft prompt {gain:+.3f} over naive against persona {persona_gain:+.3f}, "
                         f"specificity {soft['specificity']:+.3f} ({'met' if met else 'not met'})")
    body = f"""### Held-out opinions (World Values Survey, GlobalOpinionQA) on the default model

Commands: {'; '.join(f'`{c}`' for c in results['commands'])}  
Machine: {results['machine']}. Question limit per country: {', '.join(limits)} (None: every question with the
country's data). Results and each run's full configuration: `benchmarks/results/opinions-default.json`.

*similarity*: 1 - Jensen-Shannon distance (base 2) between the model's and the country's answer distribution, mean
over the country's questions, on the average of forward and reversed option order (*forward*, *reverse*: each order
alone); non-answers dropped. *specificity*: similarity to the target minus the mean similarity to the other
countries; *rank*: the target's place when every country is ranked by similarity (1: the model sounds most like the
target). *uniform*, *others' mean* (the mean of the other countries' shares), *nearest country* (the target's most
similar other country: a reference that knows the target): model-free predictors, same questions. Cost: wall
seconds of the whole evaluation (both orders) on one torch thread, per question and in all.

{chr(10).join(lines)}

Goal (the soft prompt raises similarity to the target more than persona prompting does, and its specificity is
above 0): {'; '.join(goals) or 'no country has both a soft prompt and the baselines yet'}.
"""
    write_section(SECTION, body)
    print(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--countries", default="US,CN,JP,MX")
    ap.add_argument("--prompts", default=",".join(BASELINES), help="baseline prompt styles (none: no baselines)")
    ap.add_argument("--soft-prompts", help="COUNTRY=RUN_FOLDER,...: soft prompts to evaluate (their countries are "
                                           "added to --countries)")
    ap.add_argument("--limit", type=int, default=None, help="questions per country (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--add", action="store_true", help="add to the saved results: runs already there (same country, "
                                                       "method and soft prompt) are kept and not rerun")
    ap.add_argument("--report-only", action="store_true", help="rewrite the table from the saved results")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"{SECTION}.json")
    args = ap.parse_args()
    if args.report_only:
        write_report(json.loads(args.out.read_text()))
        return
    torch.set_num_threads(args.threads)
    soft = parse_soft_prompts(args.soft_prompts)
    styles = [] if args.prompts == "none" else [s.strip() for s in args.prompts.split(",") if s.strip()]
    results = json.loads(args.out.read_text()) if args.add and args.out.is_file() else {"commands": [], "entries": []}
    results["commands"].append(command())
    results["machine"] = machine()
    done = {key(e) for e in results["entries"]}
    session = Session(MeasureConfig())
    plan = [(lookup(c), s, None) for c in args.countries.split(",") if c.strip() for s in styles]
    plan += [(lookup(c), "soft prompt", path) for c, path in soft]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for country, method, path in plan:
        if (country.name, method, path) in done:
            continue
        entry = run_one(session, country, method, args.limit, path)
        m = entry["metrics"]
        print(f"{country.name}, {method}{' ' + path if path else ''}: similarity {m['similarity']:.3f} "
              f"(forward {m['similarity_forward']:.3f}, reverse {m['similarity_reverse']:.3f}), specificity "
              f"{m['specificity']:.3f}, rank {m['rank']}/{m['n_countries']}; {entry['seconds']:.0f} s", flush=True)
        results["entries"].append(entry)
        done.add(key(entry))
        args.out.write_text(json.dumps(results, indent=1))
    write_report(results)


if __name__ == "__main__":
    main()
