"""Leverage of a soft prompt: how far random soft prompts move each index, per placement, scale and token count.

An optimiser can only move an index that candidates move at all. For each setting this samples candidates around
the initial prompt (z ~ N(0, 1) in the search space) and reports the standard deviation of each index across them
(index points) and of the loss. Usage: python benchmarks/leverage.py [--model default] [--candidates 16] [--country CN]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import command, machine, write_section

from culturealign.backends.hf import EmbeddingLookup
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.models import load_model
from culturealign.config import SoftPromptConfig
from culturealign.softprompt import PromptSpace, initial_embeddings
from culturealign.targets import lookup

SETTINGS = [
    ("suffix", 8, 1.0, "subspace"), ("suffix", 8, 4.0, "subspace"), ("suffix", 32, 1.0, "subspace"),
    ("suffix", 8, 1.0, "full"), ("prefix", 8, 1.0, "subspace"), ("prefix", 8, 4.0, "subspace"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--country", default="CN")
    ap.add_argument("--quick", action="store_true", help="suffix placement only, 8 candidates")
    args = ap.parse_args()
    start = time.time()
    lm = load_model(args.model)
    session = Session(MeasureConfig(model=args.model), lm=lm)
    session.resolve_constants()  # anchored: the cached fit, or measured now
    country = lookup(args.country)
    objective = session.objective(country)
    survey = session.survey("naive", country)
    emb = lm.model.get_input_embeddings()
    sigma = float(emb.weight.detach().float().std())
    settings = [s for s in SETTINGS if s[0] == "suffix"] if args.quick else SETTINGS
    n = 8 if args.quick else args.candidates
    lines = ["| placement | tokens | scale | space | " + " | ".join(f"SD {d}" for d in objective.dimensions)
             + " | SD loss | best loss | s per candidate |", "|---|---|---|---|" + "---|" * (len(objective.dimensions) + 3)]
    plain = objective.loss(survey.answer().expected)[0]
    for placement, n_tokens, scale, space in settings:
        cfg = SoftPromptConfig(n_tokens=n_tokens, placement=placement, scale=scale, space=space)
        p0 = initial_embeddings(cfg, EmbeddingLookup(emb), lm.tokenizer, country.name, seed=0)
        prompt_space = PromptSpace(p0, sigma, cfg, seed=0)
        prompts = prompt_space(np.random.default_rng(0).standard_normal((n, prompt_space.dim)))
        t0 = time.perf_counter()
        expected = survey.answer(prompts, placement).expected
        secs = (time.perf_counter() - t0) / n
        idx = objective.indices(expected)
        losses = objective.loss(expected)
        sds = idx.std(axis=0)
        lines.append(f"| {placement} | {n_tokens} | {scale:g} | {space} | " + " | ".join(f"{v:.2f}" for v in sds)
                     + f" | {losses.std():.2f} | {losses.min():.1f} | {secs:.2f} |")
        print(lines[-1], flush=True)
    body = (f"### Leverage of soft prompts on `{args.model}` ({country.name}{', quick' if args.quick else ''})\n\n"
            f"Command: `{command()}` ({time.time() - start:.0f} s)  \nMachine: {machine()}\n\n{n} random candidates per setting around the "
            f"initial prompt (\"You are a person from {country.name}.\"), naive prompt, default answer format; plain "
            f"model loss {plain:.1f}. SD columns: standard deviation of each index across candidates (index points).\n\n"
            + "\n".join(lines))
    write_section(f"leverage-{args.model}" + ("-quick" if args.quick else ""), body)
    print(body)


if __name__ == "__main__":
    main()
