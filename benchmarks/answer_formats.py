"""Compare answer formats on a model: option mass, item spread, order consistency, persona spread.

Chooses the default format for `measure` (see BENCHMARKS.md). Usage:
    python benchmarks/answer_formats.py [--model default] [--quick]
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from common import command, machine, write_section

from culturealign.instrument import Questionnaire
from culturealign.models import load_model
from culturealign.config import PromptConfig
from culturealign.survey import Survey
from culturealign.targets import lookup


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--quick", action="store_true", help="one persona, digits only")
    args = ap.parse_args()
    start = time.time()
    lm = load_model(args.model)
    q = Questionnaire.builtin()
    personas = ["U.S.A.", "China", "India"][: 1 if args.quick else 3]
    labels = ["digits"] if args.quick else ["digits", "letters"]
    rows = []
    for label, prefix in itertools.product(labels, ["", "Answer: "]):
        cfg = PromptConfig("naive", labels=label, answer_prefix=prefix, order="both")
        naive = Survey(lm, q, cfg).answer()
        raw = []
        for name in personas:
            pc = PromptConfig("persona", labels=label, answer_prefix=prefix, order="both")
            a = Survey(lm, q, pc, lookup(name)).answer()
            raw.append((q.raw_indices(a.expected_by_order[0, 0]), q.raw_indices(a.expected[0])))
        fwd_spread = naive.expected_by_order[0, 0].std()
        persona_fwd = np.mean([np.abs(x[0] - y[0]).mean() for x, y in itertools.combinations(raw, 2)]) if len(raw) > 1 else float("nan")
        persona_both = np.mean([np.abs(x[1] - y[1]).mean() for x, y in itertools.combinations(raw, 2)]) if len(raw) > 1 else float("nan")
        rows.append((label, prefix or "(none)", float(np.nanmean(naive.mass)), fwd_spread, float(naive.spread[0]),
                     float(naive.order_correlation[0]), float(naive.expected_by_order[0, 0].mean()), persona_fwd, persona_both))
        print(rows[-1], flush=True)
    lines = ["| labels | answer prefix | option mass | item SD (forward) | item SD (both orders) | order r | mean answer (forward) | persona spread, forward (index pts) | persona spread, both orders |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join([r[0], r[1]] + [f"{v:.3f}" if i < 4 else f"{v:.2f}" for i, v in enumerate(r[2:])]) + " |")
    body = (f"## Answer formats on `{args.model}`\n\nCommand: `{command()}` ({time.time() - start:.0f} s)  \nMachine: {machine()}\n\n"
            "Naive prompt, both option orders asked. *option mass*: next-token probability on the five labels; *item SD*: "
            "standard deviation of the 24 expected answers; *order r*: Pearson r between item profiles with options listed "
            "1..5 and 5..1 (answers mapped back; +1 = content-driven, -1 = position-driven); *persona spread*: mean absolute "
            f"difference of raw indices between the personas {', '.join(personas)}.\n\n" + "\n".join(lines))
    write_section(f"answer-formats-{args.model}" + ("-quick" if args.quick else ""), body)
    print(body)


if __name__ == "__main__":
    main()
