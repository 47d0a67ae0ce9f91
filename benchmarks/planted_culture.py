"""A planted-culture model: a small transformer trained here to answer the 24 items like a country's respondents.

Told a country (the persona prompt), it answers each item with a distribution whose mean gives that country's
published indices (up to the shared constants); untold (the naive prompt), it answers like the mean of the
reference countries. A soft prompt can therefore reach any trained country's profile: loss 0 is attainable,
and an optimiser's sample efficiency can be measured. Used by benchmarks/optimizers.py.

Usage (trains, about 5 min on 2 cores, caches, reports fit): python benchmarks/planted_culture.py [--steps 2000]

What makes it learnable: (1) the countries' item means differ by an SD of about 0.6 (planted_means); (2) auxiliary
rows ask "Which country are you from?" and teach the model to find the country in the system prompt; (3) options are
listed in one order only (ORDER). Without (1) or (3) the model stays at the item average (persona loss = naive loss
after 1500-2000 steps); (2) makes the country readable within 100 steps. With all three, 2000 steps of batch 32 reach
the targets' entropy (cross-entropy 0.462 vs floor 0.461) and the persona prompt reproduces each country's indices
to within 1 point of L1 loss, while the naive prompt sits at the reference mean (BENCHMARKS.md).
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
from culturealign.prompts import LABELS, PromptConfig, build_rows, system_message
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


def planted_means(questionnaire: Questionnaire, seed: int = 0, spread: float = 0.6) -> dict[str | None, np.ndarray]:
    """Item means per country whose raw indices are exactly (published - reference mean); None: the untold model.

    The indices fix only 6 of the 24 degrees of freedom. The minimum-norm means alone differ between countries by
    0.1-0.2 per item, too little for a small model to learn the country from. So each country also gets a part in the
    18-dimensional null space of the index formulas (item patterns that leave every index unchanged): a fixed random
    linear map of its standardised index deviations, scaled so the countries' item means differ by an SD of about
    ``spread``. Like real survey data, the countries then differ along a few latent factors.
    """
    w = questionnaire.weight_matrix()
    published = {lookup(c).name: lookup(c).vector() for c in PLANTED_COUNTRIES}
    reference = np.mean([lookup(c).vector() for c in REFERENCE_COUNTRIES], axis=0)
    deviations = np.array([s - reference for s in published.values()])           # (countries, 6)
    exact = deviations @ np.linalg.pinv(w).T                                      # (countries, 24), minimum norm
    null = np.linalg.svd(w)[2][len(w):].T                                         # (24, 18)
    latent = deviations / deviations.std(axis=0)
    extra = latent @ (null @ np.random.default_rng(seed).normal(size=(null.shape[1], w.shape[0]))).T
    extra *= spread / extra.std(axis=0).mean()
    extra *= min(1.0, 1.85 / np.abs(exact + extra).max())                         # keep means inside [1.15, 4.85]
    means: dict[str | None, np.ndarray] = {None: np.full(24, 3.0)}  # untold: raw indices 0 = the reference mean
    means.update({c: 3.0 + exact[i] + extra[i] for i, c in enumerate(published)})
    return means


ORDER = "forward"  # options listed 1..5 only: with both orders the small model does not learn which way round it is
                  # and answers symmetrically (mass on B and D alike), so order-balanced means stay at 3


def planted_session(lm: LoadedModel):
    """The measurement session for the planted model: its own option order, anchored constants."""
    from culturealign.measure import MeasureConfig, Session

    return Session(MeasureConfig(model=lm.resolved_path, constants="anchored", order=ORDER), lm=lm)


def training_rows(tokenizer, questionnaire, labels: str = "letters"):
    rows, targets = [], []
    for country, mu in planted_means(questionnaire).items():
        style = "naive" if country is None else "persona"
        cfg = PromptConfig(style, labels=labels, order=ORDER)
        for row in build_rows(questionnaire, tokenizer, cfg, lookup(country) if country else None):
            p = two_point(mu[row.item - 1])
            rows.append(row)
            targets.append(p[::-1] if row.reversed else p)  # listed order
    return rows, np.array(targets)


AUX_QUESTIONS = ("Which country are you from?", "Where are you from?", "What is your country?")


def country_questions(tokenizer, questionnaire) -> tuple[list[list[int]], list[int]]:
    """Auxiliary rows through the same template: persona system prompt, 'Which country are you from?', and the
    country's name (one token) as the answer. They teach the small model to find the country in the system prompt;
    without them 1500 steps leave it at the item average, with persona answers equal to the naive ones."""
    ids, answers = [], []
    for c in PLANTED_COUNTRIES:
        target = lookup(c)
        for question in AUX_QUESTIONS:
            messages = [{"role": "system", "content": system_message("persona", target, questionnaire)},
                        {"role": "user", "content": question}]
            ids.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                     return_dict=False))
            answers.append(tokenizer.convert_tokens_to_ids(target.name))
    return ids, answers


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids), each (len(seqs), longest)."""
    length = max(map(len, seqs))
    input_ids = torch.full((len(seqs), length), pad_id)
    mask = torch.zeros(len(seqs), length, dtype=torch.long)
    for i, seq in enumerate(seqs):
        input_ids[i, length - len(seq):], mask[i, length - len(seq):] = torch.tensor(seq), 1
    return input_ids, mask, (mask.cumsum(1) - 1).clamp(min=0)


def train_planted(steps: int = 2000, hidden: int = 64, layers: int = 2, seed: int = 0, lr: float = 3e-3,
                  verbose: bool = True) -> LoadedModel:
    """Train (or load from the cache) the planted-culture model: a Llama of ``layers`` x ``hidden`` with a BPE
    tokenizer in which each country name is one token, trained on the survey rows (cross-entropy against the planted
    answer distributions, over the full vocabulary) plus the country questions."""
    recipe = [steps, hidden, layers, seed, lr, PLANTED_COUNTRIES, ORDER, 7]
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]
    folder = cache_dir() / "planted" / key
    q = Questionnaire.builtin()
    if (folder / "config.json").is_file():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return LoadedModel(AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder),
                           f"planted-culture-{key}", str(folder))
    names = [lookup(c).name for c in PLANTED_COUNTRIES]
    tokenizer = make_tokenizer(extra_text=[f"You are a person from {n}." for n in names] * 3, vocab_size=2000)
    tokenizer.add_tokens(names)
    model = make_model(tokenizer, seed=seed, hidden=hidden, layers=layers, heads=4, head_scale=1.0, mlp_ratio=4)
    rows, targets = training_rows(tokenizer, q)
    scorer = SurveyScorer(model, tokenizer, rows, LABELS["letters"])
    survey = left_pad([h + t for h, t in zip(scorer.head_ids, scorer.tail_ids)], tokenizer.pad_token_id)
    aux_ids, aux_answers = country_questions(tokenizer, q)
    aux = left_pad(aux_ids, tokenizer.pad_token_id)
    target, aux_target = torch.tensor(targets, dtype=torch.float32), torch.tensor(aux_answers)
    option_ids = torch.tensor(scorer.option_ids)

    def last_logits(inputs, batch=slice(None)):
        ids, mask, positions = (x[batch] for x in inputs)
        return model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits[:, -1]

    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for step in range(steps):
        batch = torch.randperm(len(rows), generator=gen)[:32]
        logp = torch.log_softmax(last_logits(survey, batch), -1)[:, option_ids]
        loss = -(target[batch] * logp).sum(-1).mean()  # over the full vocabulary: mass goes to the options
        aux_loss = torch.nn.functional.cross_entropy(last_logits(aux), aux_target)
        opt.zero_grad()
        (loss + aux_loss).backward()
        opt.step()
        schedule.step()
        if verbose and (step % 250 == 0 or step == steps - 1):
            print(f"step {step}: survey cross-entropy {loss.item():.3f}, country question {aux_loss.item():.3f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if verbose:
        with torch.no_grad():
            logp = torch.cat([torch.log_softmax(last_logits(survey, slice(i, i + 96)), -1)[:, option_ids]
                              for i in range(0, len(rows), 96)])
        entropy = -(target * torch.log(target.clamp(min=1e-12))).sum(-1).mean()
        print(f"survey cross-entropy on all rows {-(target * logp).sum(-1).mean():.3f} "
              f"(the targets' entropy, the floor: {entropy:.3f})")
    folder.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return LoadedModel(model, tokenizer, f"planted-culture-{key}", str(folder))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    start = time.time()
    lm = train_planted(args.steps)
    print(f"trained/loaded in {time.time() - start:.0f} s: {lm.resolved_path}")
    session = planted_session(lm)
    for c in PAPER_COUNTRIES:
        t = lookup(c)
        rec = {s: session.measure(t, s)["loss"] for s in ("naive", "persona")}
        print(f"{t.name}: naive {rec['naive']:.1f}  persona {rec['persona']:.1f}  "
              f"reference mean {session.objective(t).reference_mean_loss():.1f}")


if __name__ == "__main__":
    main()
