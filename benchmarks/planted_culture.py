"""A planted-culture model: a small transformer trained here to answer the 24 items like a country's respondents.

Told a country (the persona prompt), it answers each item with a distribution whose mean gives that country's
published indices (up to the shared constants); untold (the naive prompt), it answers like the mean of the
reference countries. A soft prompt can therefore reach any trained country's profile: loss 0 is attainable,
and an optimiser's sample efficiency can be measured. Used by benchmarks/optimizers.py.

Usage (trains, saves to the cache, reports fit): python benchmarks/planted_culture.py [--steps 1500]

Status: not working yet. With 2 layers x 64 hidden, 1500 steps of batch 32 (about 4 minutes alone on 2 cores) the
model learns each item's answer averaged over countries (cross-entropy plateau ~0.41) but not the dependence on the
country named in the system prompt: persona and naive losses stay equal (e.g. U.S.A. 132.7 vs 132.9). Next steps to
try: a shorter persona system prompt so the country is a larger share of the context, a larger learning rate or
model, curriculum on the countries, or conditioning the answer on a country token next to the answer position.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from culturealign.constants import REFERENCE_COUNTRIES
from culturealign.instrument import Questionnaire
from culturealign.models import LoadedModel, cache_dir
from culturealign.prompts import LABELS, PromptConfig, build_rows
from culturealign.scoring import SurveyScorer
from culturealign.targets import lookup
from culturealign.toymodels import make_model, make_tokenizer

PAPER_COUNTRIES = ("U.S.A.", "China", "India", "Saudi Arabia")
PLANTED_COUNTRIES = tuple(dict.fromkeys(REFERENCE_COUNTRIES + PAPER_COUNTRIES))


def two_point(mean: float) -> np.ndarray:
    """The distribution on 1..5 with the given mean and all mass on the two nearest answers (low entropy, so a
    country's answers differ sharply from another's and the model has a strong signal to learn)."""
    lower = int(np.clip(np.floor(mean), 1, 4))
    p = np.zeros(5)
    p[lower - 1], p[lower] = lower + 1 - mean, mean - lower
    return p


def planted_means(questionnaire: Questionnaire) -> dict[str | None, np.ndarray]:
    """Item means per country: 3 + the minimum-norm change whose raw indices are (published - reference mean)."""
    w = questionnaire.weight_matrix()
    published = {c: lookup(c).vector() for c in PLANTED_COUNTRIES}
    reference = np.mean([published[c] for c in REFERENCE_COUNTRIES], axis=0)
    means = {None: np.full(24, 3.0)}  # untold: raw indices 0, the reference mean under anchored constants
    for c, s in published.items():
        means[lookup(c).name] = np.clip(3.0 + np.linalg.pinv(w) @ (s - reference), 1.05, 4.95)
    return means


def training_rows(tokenizer, questionnaire, labels: str = "letters"):
    rows, targets = [], []
    for country, mu in planted_means(questionnaire).items():
        style = "naive" if country is None else "persona"
        cfg = PromptConfig(style, labels=labels, order="both")
        for row in build_rows(questionnaire, tokenizer, cfg, lookup(country) if country else None):
            p = two_point(mu[row.item - 1])
            rows.append(row)
            targets.append(p[::-1] if row.reversed else p)  # listed order
    return rows, np.array(targets)


def train_planted(steps: int = 800, hidden: int = 64, layers: int = 2, seed: int = 0, lr: float = 5e-3,
                  verbose: bool = True) -> LoadedModel:
    """Train (or load from the cache) the planted-culture model."""
    key = hashlib.sha256(json.dumps([steps, hidden, layers, seed, lr, PLANTED_COUNTRIES, 4]).encode()).hexdigest()[:12]
    folder = cache_dir() / "planted" / key
    q = Questionnaire.builtin()
    if (folder / "config.json").is_file():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return LoadedModel(AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder),
                           f"planted-culture-{key}", str(folder))
    texts = [f"You are a person from {lookup(c).name}." for c in PLANTED_COUNTRIES]
    tokenizer = make_tokenizer(extra_text=texts * 3, vocab_size=2000)
    model = make_model(tokenizer, seed=seed, hidden=hidden, layers=layers, heads=4, head_scale=1.0)
    rows, targets = training_rows(tokenizer, q)
    scorer = SurveyScorer(model, tokenizer, rows, LABELS["letters"])
    ids = [h + t for h, t in zip(scorer.head_ids, scorer.tail_ids)]
    length = max(map(len, ids))
    input_ids = torch.full((len(ids), length), tokenizer.pad_token_id)
    mask = torch.zeros(len(ids), length, dtype=torch.long)
    for i, seq in enumerate(ids):
        input_ids[i, length - len(seq):], mask[i, length - len(seq):] = torch.tensor(seq), 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    target = torch.tensor(targets, dtype=torch.float32)
    option_ids = torch.tensor(scorer.option_ids)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for step in range(steps):
        batch = torch.randperm(len(ids), generator=gen)[:32]
        logits = model(input_ids=input_ids[batch], attention_mask=mask[batch], position_ids=positions[batch],
                       logits_to_keep=1).logits[:, -1]
        logp = torch.log_softmax(logits, -1)[:, option_ids]
        loss = -(target[batch] * logp).sum(-1).mean()  # cross-entropy over the full vocabulary: mass goes to options
        opt.zero_grad()
        loss.backward()
        opt.step()
        if verbose and (step % 100 == 0 or step == steps - 1):
            print(f"step {step}: cross-entropy {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    folder.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return LoadedModel(model, tokenizer, f"planted-culture-{key}", str(folder))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=800)
    args = ap.parse_args()
    from culturealign.measure import MeasureConfig, Session

    start = time.time()
    lm = train_planted(args.steps)
    print(f"trained/loaded in {time.time() - start:.0f} s: {lm.resolved_path}")
    session = Session(MeasureConfig(model=lm.resolved_path, constants="anchored"), lm=lm)
    for c in PAPER_COUNTRIES:
        t = lookup(c)
        rec = {s: session.measure(t, s)["loss"] for s in ("naive", "persona")}
        print(f"{t.name}: naive {rec['naive']:.1f}  persona {rec['persona']:.1f}  "
              f"reference mean {session.objective(t).reference_mean_loss():.1f}")


if __name__ == "__main__":
    main()
