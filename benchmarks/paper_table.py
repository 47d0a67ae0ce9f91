"""Write the main table of an experiment folder (from `culturealign experiment`) into BENCHMARKS.md.

Usage: python benchmarks/paper_table.py exp/paper
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from common import machine, write_section

METHODS = ("naive", "persona", "icl", "reference mean", "soft prompt")


def table(results: dict) -> str:
    lines = ["| country | " + " | ".join(METHODS) + " | soft prompt beats | p (one-sample t of the seeds against the deterministic baseline, vs naive / ICL) |",
             "|---|" + "---|" * (len(METHODS) + 2)]
    for country, entry in results["summary"].items():
        cells, soft = [], entry["methods"]["soft prompt"]["loss"]
        for m in METHODS:
            v = entry["methods"][m]["loss"]
            cells.append(f"{v['mean']:.1f}" + (f" [{v['low']:.1f}, {v['high']:.1f}]" if v["n"] > 1 else ""))
        beats = [m for m in METHODS[:-1] if soft["mean"] < entry["methods"][m]["loss"]["mean"]]
        tests = entry["soft_prompt_vs"]
        p = " / ".join(f"{tests[m]['p_value_t']:.3f}" for m in ("naive", "icl"))
        lines.append(f"| {country} | " + " | ".join(cells) + f" | {', '.join(beats) or 'none'} | {p} |")
    bench = ["| country | " + " | ".join(m for m in METHODS if m != "reference mean") + " |",
             "|---|" + "---|" * (len(METHODS) - 1)]
    for country, entry in results["summary"].items():
        cells = []
        for m in METHODS:
            if m == "reference mean":
                continue
            v = entry["methods"][m].get("culturalbench_question_accuracy")
            cells.append("-" if v is None else f"{v['mean']:.2f}")
        bench.append(f"| {country} | " + " | ".join(cells) + " |")
    return "\n".join(lines), "\n".join(bench)


def main() -> None:
    folder = Path(sys.argv[1])
    results = json.loads((folder / "results.json").read_text())
    exp = json.loads((folder / "experiment.json").read_text())
    cfg = exp["config"]
    a = cfg["align"]
    argv = results.get("provenance", {}).get("argv", [])
    command = " ".join(["culturealign", *argv[1:]]) if argv else f"culturealign experiment ... --out {folder}"
    vsm, bench = table(results)
    n_q = next((r["culturalbench"]["n_questions"] for r in results["rows"] if r.get("culturalbench")), 0)
    body = (f"## Main table: soft prompt vs prompting baselines on the default model\n\n"
            f"Command: `{command}` ({results['wall_time_s'] / 60:.0f} min), then "
            f"`python benchmarks/paper_table.py {folder}`  \nMachine: {machine()}\n\n"
            f"VSM 2013 L1 loss (sum of six absolute index errors; lower is better), anchored constants, default "
            f"answer format (letters, both option orders). Soft prompt: {a['optimizer'].upper()}, {a['budget']} "
            f"candidate evaluations per run, population {a['popsize']}, {a['soft']['n_tokens']} tokens, "
            f"{a['soft']['placement']} placement, {a['soft']['space']} (dim {a['soft']['subspace_dim']}), scale "
            f"{a['soft']['scale']}; mean and [95 % t confidence interval] over {cfg['seeds']} seeds. The baselines are deterministic "
            f"(one value); the p-values are one-sample t tests of the soft prompt's seeds against the baseline's value "
            f"(a paired t test would need seeded baselines). Written with earlier constants: not comparable with "
            f"the held-out table.\n\n{vsm}\n\n"
            f"CulturalBench-Hard question accuracy (all four judgements right) on the first {n_q} questions about "
            f"each country:\n\n{bench}")
    write_section("paper-table", body)
    print(body)


if __name__ == "__main__":
    main()
