"""The cost of one gradient step on the default model, measured side by side in one process, and how far it is
from this machine's limit.

Steps of `align`'s default (China, 8 prefix tokens, naive prompt, both option orders), each kind timed in turn
(interleaved, so that a slow spell of the shared machine hits every kind alike), the median kept:

- `full, no shared stems`: every row of the training wording (2 blocks: forward and reverse, 48 rows), each row
  run whole after the shared prefix: the step before the item stems were shared;
- `full, stems in one pass`: the same rows, the two orders of an item sharing their stem's cache, every stem of a
  micro-batch in one pass (padded to the longest);
- `full`: the same, stems of similar length in one pass each (``hf.STEM_BUCKET_WIDTH``): the default step;
- `rows 24`: a stochastic step (`--rows-per-step 24`): one (wording, order) block;
- `full, suffix placement`: every row with the soft prompt after the item text (``--placement suffix``): each row's
  head is cached once for the run (its first step builds it), a step runs the soft prompt and the tail;
- `2 wordings, full` and `2 wordings, rows 48`: training on the two training wordings, every row or half of them.

Per kind: seconds per step and their ratio to the earlier full step; tokens per step as the forward passes run
them (counted in the scorer's forward: the soft prompt and the text every row shares once per step, each item's
stem once per micro-batch, each row's tail, padding included) and without any sharing; FLOPs per step from the model's shape (4 x non-embedding parameters per token run: a forward pass and
a backward pass to the inputs only, the weights being frozen); the FLOP rate that implies, against this machine's
fp32 matmul rate measured in the same process.

Usage:  python benchmarks/speed.py [--repeats 3] [--threads N]
Writes the "speed" section of BENCHMARKS.md and benchmarks/results/speed.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import ROOT, command, counting_forward, machine, matmul_rate, write_section

from culturealign.align import make_alignment
from culturealign.config import TRAIN_WORDINGS, AlignConfig, MeasureConfig, SoftPromptConfig
from culturealign.session import Session
from culturealign.backends import hf

RESULTS = ROOT / "benchmarks" / "results" / "speed.json"
BUCKET_WIDTH = hf.STEM_BUCKET_WIDTH


def unshared_tokens(run, chosen: list[tuple[int, int]]) -> int:
    """Tokens of the blocks ``chosen`` if every row ran whole, soft prompt included (no cache shared)."""
    n_tokens, total = run.config.soft.n_tokens, 0
    for w, grad in enumerate(run.grads):
        for o in (o for ww, o in chosen if ww == w):
            total += sum(n_tokens + len(grad.scorer.head_ids[r]) + len(grad.scorer.tail_ids[r])
                         for r in range(o * grad.n_items, (o + 1) * grad.n_items))
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    session = Session(MeasureConfig())
    session.resolve_constants()
    more = list(TRAIN_WORDINGS[1:])
    kinds = {"full, no shared stems (the earlier path)": {}, "full, stems in one pass": {}, "full": {},
             "rows 24": {"rows_per_step": 24}, "full, suffix placement": {"soft": SoftPromptConfig(placement="suffix")},
             "2 wordings, full": {"wordings": more}, "2 wordings, rows 48": {"wordings": more, "rows_per_step": 48}}
    tmp = Path(tempfile.mkdtemp(prefix="speed-bench-"))
    runs = {name: make_alignment(AlignConfig(country="China", validate=None, measure=session.config, **kw),
                                 tmp / name.replace(" ", "_").replace(",", ""), session=session)
            for name, kw in kinds.items()}
    rate = matmul_rate()
    non_embedding = sum(p.numel() for n, p in session.backend.model.named_parameters() if "embed" not in n
                        and "lm_head" not in n)
    for run in runs.values():   # one untimed step each: the suffix path builds its rows' head cache in its first
        run.step()
    times = {name: [] for name in runs}
    tokens = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            step = run.state.generation
            chosen = ([(w, o) for w in range(len(run.grads)) for o in range(len(run.grad.orders))]
                      if run.sampler is None else run.sampler.blocks(step))
            stems = not name.startswith("full, no shared stems")
            # one pass for every stem of a micro-batch, padded to the longest (before the stems were bucketed)
            hf.STEM_BUCKET_WIDTH = 10 ** 6 if name == "full, stems in one pass" else BUCKET_WIDTH
            counter = [0]
            for grad in run.grads:   # the earlier path: no row shares its item's stem
                grad.scorer._stems = None if stems else [0] * grad.scorer.n_rows
                grad.scorer._forward = counting_forward(grad.scorer, counter)
            t0 = time.perf_counter()
            run.step()
            times[name].append(time.perf_counter() - t0)
            for grad in run.grads:
                grad.scorer._stems = None
                del grad.scorer._forward            # back to the class's own method
            tokens.setdefault(name, []).append((counter[0], unshared_tokens(run, chosen)))
            print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    base = statistics.median(times["full, no shared stems (the earlier path)"])
    rows = []
    for name, ts in times.items():
        s = statistics.median(ts)
        ran = statistics.mean(t[0] for t in tokens[name])
        plain = statistics.mean(t[1] for t in tokens[name])
        flops = 4 * non_embedding * ran
        rows.append({"kind": name, "config": runs[name].config.to_dict(), "seconds": ts, "median_s": s,
                     "ratio": s / base, "tokens_run": ran, "tokens_unshared": plain, "flops": flops,
                     "flop_rate": flops / s, "of_matmul_rate": flops / s / rate})
    result = {"command": command(), "machine": machine(), "threads": torch.get_num_threads(),
              "matmul_rate": rate, "non_embedding_parameters": non_embedding, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    lines = ["### The cost of a gradient step (default model, one process)", "",
             f"Command: `{result['command']}`  ", f"Machine: {result['machine']}, {result['threads']} torch threads  ",
             f"Each kind's step timed {args.repeats} times, interleaved with the others; the median. `align`'s default "
             "for China (8 prefix tokens, naive prompt, both orders, validation off for the timing). Tokens run: counted in "
             "the scorer's forward passes (the soft prompt and the text all rows share, once per step and wording; "
             "each item's stem, the text its option orders share, once per micro-batch; each row's tail; padding "
             "included); unshared: every row whole. FLOPs: 4 x "
             f"{non_embedding / 1e6:.0f} M non-embedding parameters per token run (forward, and backward to the "
             f"inputs only). This machine's fp32 matmul rate, same process: {rate / 1e9:.0f} GFLOP/s. Full "
             "configurations in benchmarks/results/speed.json.", "",
             "| step | rows | s per step (median) | / earlier full step | tokens run (unshared) | GFLOP per step | GFLOP/s | of matmul rate |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n_rows = r["config"]["rows_per_step"] or 24 * 2 * (1 + len(r["config"]["wordings"]))
        lines.append(f"| {r['kind']} | {n_rows} | {r['median_s']:.1f} | {r['ratio']:.2f} | {r['tokens_run']:.0f} "
                     f"({r['tokens_unshared']:.0f}) | {r['flops'] / 1e9:.0f} | {r['flop_rate'] / 1e9:.0f} | "
                     f"{r['of_matmul_rate']:.2f} |")
    write_section("speed", "\n".join(lines))


if __name__ == "__main__":
    main()
