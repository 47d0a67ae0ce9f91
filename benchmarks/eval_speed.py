"""Seconds per 24-item evaluation: distribution scoring (each placement, cached and uncached) vs generating text.

Usage: python benchmarks/eval_speed.py [--model default] [--candidates 4] [--samples 5] [--quick]
All timings come from one run on one machine; ratios are what to compare across machines.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from common import command, machine, matmul_rate, write_section

from culturealign.instrument import Questionnaire
from culturealign.models import load_model
from culturealign.config import PromptConfig
from culturealign.backends.hf import _common_prefix
from culturealign.survey import Survey
from culturealign.targets import lookup


def timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up (and builds any per-run cache)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--candidates", type=int, default=4, help="soft-prompt candidates per batch")
    ap.add_argument("--n-tokens", type=int, default=8)
    ap.add_argument("--samples", type=int, default=5, help="replies per item for the generation protocol")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    start = time.time()
    lm = load_model(args.model)
    gflops = matmul_rate() / 1e9
    q, cn = Questionnaire.builtin(), lookup("CN")
    survey = Survey(lm, q, PromptConfig("persona", labels="letters", order="forward"), cn)
    hidden = survey.hidden_size
    soft = torch.randn(args.candidates, args.n_tokens, hidden) * lm.model.get_input_embeddings().weight.std()
    n_params = sum(p.numel() for n, p in lm.model.named_parameters() if "embed" not in n)
    tokens = [len(h) + len(t) for h, t in zip(survey.scorer.head_ids, survey.scorer.tail_ids)]
    rows = []

    def per_candidate(placement, cache, n_cand):
        survey.scorer.use_cache = cache
        s = soft[:n_cand] if n_cand else None
        return timed(lambda: survey.answer(s, placement)) / max(1, n_cand or 1)

    def batch_mb(cached, new):  # the scorer's own estimate for one forward pass (what --max-memory limits)
        sc = survey.scorer
        return sc.batch_for(cached, new) * sc.sequence_bytes(cached, new) / 2 ** 20

    shared = len(_common_prefix(survey.scorer.head_ids))
    longest, tail_len = max(tokens), max(len(t) for t in survey.scorer.tail_ids)
    rows.append(("plain model, no soft prompt (shared prefix cached)", per_candidate("prefix", True, 0),
                 sum(tokens) - 23 * shared, batch_mb(shared, longest - shared)))
    rows.append(("prefix placement, uncached", per_candidate("prefix", False, 1 if args.quick else 2),
                 sum(tokens) + 24 * args.n_tokens, batch_mb(0, longest + args.n_tokens)))
    rows.append(("prefix placement, KV of soft prompt + shared prefix reused", per_candidate("prefix", True, args.candidates),
                 sum(tokens) - 23 * shared + 24 * args.n_tokens,
                 batch_mb(shared + args.n_tokens, longest - shared)))
    tails = sum(len(t) for t in survey.scorer.tail_ids)
    rows.append(("suffix placement, item KV cached once per run", per_candidate("suffix", True, args.candidates),
                 tails + 24 * args.n_tokens, batch_mb(longest - tail_len, tail_len + args.n_tokens)))
    survey.scorer.use_cache = True
    n_samples = 1 if args.quick else args.samples
    gen = timed(lambda: survey.sample(n_samples, seed=0, max_new_tokens=8), repeats=1)
    gen_per_sample = gen / n_samples
    lines = ["| evaluation of 24 items | s per candidate | achieved GFLOP/s | fraction of matmul rate | "
             f"speed-up vs generation, 1 reply/item | vs CAT protocol ({args.samples} replies/item) | "
             "est. memory per forward pass (MB) |",
             "|---|---|---|---|---|---|---|"]
    for name, secs, computed_tokens, mb in rows:
        rate = 2 * n_params * computed_tokens / secs / 1e9
        lines.append(f"| {name} | {secs:.3f} | {rate:.1f} | {rate / gflops:.2f} | {gen_per_sample / secs:.1f}x | "
                     f"{args.samples * gen_per_sample / secs:.1f}x | {mb:.0f} |")
    lines.append(f"| generation: one sampled reply of up to 8 tokens per item (timed over {n_samples} replies) | "
                 f"{gen_per_sample:.3f} | | | 1.0x | | |")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    body = (f"## Evaluation speed on `{args.model}`\n\nCommand: `{command()}` ({time.time() - start:.0f} s)  \n"
            f"Machine: {machine()}; measured fp32 matmul rate {gflops:.1f} GFLOP/s (1024x1024)\n\n"
            f"Persona prompt, letters, forward order (24 rows, {min(tokens)}-{max(tokens)} tokens each), "
            f"{args.n_tokens} soft tokens, {args.candidates} candidates per batch. FLOPs count 2 x {n_params / 1e6:.0f}M "
            "non-embedding parameters per token actually computed (attention FLOPs left out). The generation protocol "
            "needs several replies per item to estimate a distribution (the CAT paper used 5); one reply is the "
            "most favourable case for it. Memory: the scorer's estimate for one forward pass of a full batch (key-value "
            f"cache copies, activations, kept logits), the quantity `--max-memory` bounds; peak resident memory of the "
            f"whole benchmark process: {peak_rss:.0f} MB.\n\n" + "\n".join(lines))
    write_section(f"eval-speed-{args.model}" + ("-quick" if args.quick else ""), body)
    print(body)


if __name__ == "__main__":
    main()
