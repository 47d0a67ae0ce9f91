"""A planted-culture model: a small transformer trained here to answer the 24 items like simulated respondents of a
country whose six published scores it is told in text. Countries are held out: the benchmarks align only to them.

The data (all synthetic at the item level, built from the published six-dimension scores):

- **Respondent model.** A country (or any six-score profile s) has item means mu(s) = 3 + W+ (s - C) + N A (s - C) / sd:
  the minimum-norm means whose index formulas give exactly s under the constants C (W+ the pseudo-inverse of the
  6 x 24 index formulas, C the mean profile of the training countries), plus a part in the 18-dimensional null space
  of the formulas (a fixed random linear map A of the standardised scores; it changes no index) that makes countries
  differ clearly on every item, like real surveys, where countries differ along a few latent factors. Each of N
  simulated respondents answers item i with round(mu' + lambda f + e), clipped to 1..5, where f is the
  respondent's own trait (shared across items), e item noise and mu' the latent mean whose rounded answers have mean
  mu(s). The sample's answers are then nudged (the fewest respondents moved by one step) so that every item's
  empirical mean is within 1/(2N) of mu(s). The targets are the respondents' empirical answer distributions.
- **Conditioning on what a prompt can carry.** The model is told the six scores as text,
  "PDI 80, IDV 20, MAS 66, UAI 30, LTO 87, IVR 24", never a country name, in one of three positions: the system
  prompt, the user turn before the item, or the user turn after it (where a suffix soft prompt sits). Untold (no
  conditioning text) it answers like the pooled respondents of all training countries (the reference-mean
  predictor). The tokenizer reads each stated score ("PDI 80") as one token whose embedding is linear in the score
  (``score_embedding_rows``), so a score never trained on still means something, and the 2-layer model reads the
  scores in one attention hop. With the digits as separate tokens it did not learn to read them in 1500 steps
  (cross-entropy stayed at the level of a model that ignores the text, also with an auxiliary "What is your PDI
  score?" task), because reading a digit's dimension takes a two-hop circuit.
- **Training.** Each step draws ``batch`` rows, each its own (profile, position, item): a training country
  (``country_share``), a synthetic profile, or untold (``untold_share``). The loss is the cross-entropy against the
  respondents' answer distribution over the full vocabulary (so the mass goes to the options) plus ``index_weight``
  x the Huber loss (delta 1) of the row's expected-answer error scaled by the item's weight in the index formulas
  (the norm of its column of W, in index points): cross-entropy alone left the expected answers a few hundredths off,
  which the formulas (weights 25-35 on item-mean differences) turn into tens of index points. The log reports the
  stated-score L1 loss of fresh synthetic validation profiles (never trained on) per position.
- **Held-out countries.** Of the 66 countries with all six scores, the four paper countries (U.S.A., China, India,
  Saudi Arabia) and four more drawn at random are held out; the other 58 and N_SYNTHETIC synthetic profiles (drawn
  from the training countries' mean and covariance, none within 30 L1 points of a held-out country) are trained on.

Usage (trains once, cached; then reports the fit and writes BENCHMARKS.md):
    python benchmarks/planted_culture.py [--steps N] [--no-write]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from culturealign.instrument import DIMENSIONS, N_ITEMS, N_OPTIONS, Questionnaire
from culturealign.models import LoadedModel, cache_dir
from culturealign.prompts import LABELS, SurveyRow, render_chat, user_message
from culturealign.backends.hf import SurveyScorer
from culturealign.targets import all_countries, lookup

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # tests/toymodels.py: the tiny model
from toymodels import make_model, make_tokenizer  # noqa: E402

PAPER_COUNTRIES = ("U.S.A.", "China", "India", "Saudi Arabia")
N_EXTRA_HELD_OUT = 4          # held out besides the paper countries, drawn at random
N_SYNTHETIC = 2000            # synthetic training profiles
SYNTHETIC_MIN_L1 = 30.0       # no synthetic profile within this L1 distance of a held-out country
N_RESPONDENTS = 500
SPREAD = 0.5                  # SD of the countries' item means from the latent factors, before the range shrink
STYLE = 0.5                   # SD across countries of the response style (a shift of every item)
BASELINE = 0.5                # SD across items of the untold item means
TRAIT, NOISE = 0.25, 0.35      # respondent model: SD of the respondent's trait and of the item noise (latent scale)
POSITIONS = ("system", "before", "after")
ORDER = "forward"  # options listed A..E as 1..5 only: see the module docstring of BENCHMARKS.md's planted section
NEUTRAL_TEXT = "Please answer the following question."
RECIPE_VERSION = 5


def six_dimension_countries() -> list[str]:
    return [c.name for c in all_countries() if all(d in c.scores for d in DIMENSIONS)]


def split(seed: int = 0) -> tuple[list[str], list[str]]:
    """(training countries, held-out countries): the paper's four and N_EXTRA_HELD_OUT random others held out."""
    names = six_dimension_countries()
    paper = [lookup(c).name for c in PAPER_COUNTRIES]
    rest = [n for n in names if n not in paper]
    extra = [str(x) for x in np.random.default_rng(seed).choice(rest, N_EXTRA_HELD_OUT, replace=False)]
    held = paper + sorted(extra)
    return [n for n in names if n not in held], held


def scores_text(scores) -> str:
    """The conditioning text: the six scores, rounded to integers, in the canonical order."""
    return ", ".join(f"{d} {int(round(float(v)))}" for d, v in zip(DIMENSIONS, scores))


class RespondentModel:
    """Item means and simulated respondents for any six-score profile (see the module docstring)."""

    def __init__(self, questionnaire: Questionnaire, constants: np.ndarray, seed: int = 0, spread: float = SPREAD):
        self.q, self.constants = questionnaire, np.asarray(constants, dtype=float)
        w = questionnaire.weight_matrix()
        self.pinv = np.linalg.pinv(w)                                               # (24, 6)
        null = np.linalg.svd(w)[2][len(w):].T                                       # (24, 18)
        world = np.array([lookup(n).vector() for n in six_dimension_countries()])  # every real country
        self.sd = world.std(axis=0)
        rng = np.random.default_rng(seed)
        self.mix = null @ rng.normal(size=(null.shape[1], len(w)))                  # (24, 6)
        self.mix *= spread / self._extra(world).std(axis=0).mean()
        # a response style (acquiescence): every item shifts with a fixed linear function of the scores; the
        # all-ones vector is in the null space (each formula's weights sum to zero), so no index changes
        self.style = rng.normal(size=len(w))
        self.style *= STYLE / (((world - self.constants) / self.sd) @ self.style).std()
        # items differ in their mean answer (a null-space baseline: the mean profile's indices stay C)
        self.baseline = null @ rng.normal(size=null.shape[1])
        self.baseline *= BASELINE / self.baseline.std()
        dev = np.abs(self.means(world) - 3.0 - self.exact(world)).max()
        room = 1.9 - np.abs(self.exact(world)).max()
        shrink = min(1.0, room / dev) if dev > 0 else 1.0                             # real countries in [1.1, 4.9]
        self.mix, self.style, self.baseline = self.mix * shrink, self.style * shrink, self.baseline * shrink

    def exact(self, scores: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(scores) - self.constants) @ self.pinv.T

    def _extra(self, scores: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(scores) - self.constants) / self.sd
        out = z @ self.mix.T
        if hasattr(self, "style"):
            out = out + (z @ self.style)[:, None] + self.baseline
        return out

    def means(self, scores) -> np.ndarray:
        """``(n, 6)`` profiles -> ``(n, 24)`` item means whose indices under the constants are the profiles."""
        return 3.0 + self.exact(scores) + self._extra(scores)

    def respondents(self, scores, n: int = N_RESPONDENTS, seed: int = 0) -> np.ndarray:
        """``(n, 24)`` answers 1..5 of ``n`` simulated respondents of one profile; item means within 1/(2n) of
        :meth:`means`."""
        mu = self.means(scores)[0]
        if mu.min() < 1 or mu.max() > 5:
            raise ValueError("profile outside the respondent model's range (item means must lie in 1..5)")
        rng = np.random.default_rng(seed)
        latent_mean = latent_for_mean(mu, float(np.hypot(TRAIT, NOISE)))
        z = latent_mean + TRAIT * rng.normal(size=(n, 1)) + NOISE * rng.normal(size=(n, N_ITEMS))
        answers = np.clip(np.rint(z), 1, 5).astype(int)
        for i in range(N_ITEMS):  # move the fewest respondents by one step to hit the mean
            need = int(round(mu[i] * n)) - int(answers[:, i].sum())
            step = np.sign(need)
            if step == 0:
                continue
            movable = np.nonzero(answers[:, i] < 5 if step > 0 else answers[:, i] > 1)[0]
            closeness = (z[movable, i] - answers[movable, i]) * step   # nearest to rounding the other way first
            chosen = movable[np.argsort(-closeness)[:abs(need)]]
            answers[chosen, i] += step
        return answers


def latent_for_mean(mu: np.ndarray, tau: float) -> np.ndarray:
    """The latent means m with E[clip(round(m + tau Z), 1, 5)] = mu (bisection; the map is increasing)."""
    from scipy.stats import norm

    lo, hi = np.full_like(mu, -3.0), np.full_like(mu, 9.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        mean = 1 + sum(norm.cdf((mid - k - 0.5) / tau) for k in range(1, 5))
        lo, hi = np.where(mean < mu, mid, lo), np.where(mean < mu, hi, mid)
    return (lo + hi) / 2


def distribution(answers: np.ndarray) -> np.ndarray:
    """``(n, 24)`` answers -> ``(24, 5)`` empirical answer distributions."""
    return np.stack([np.bincount(answers[:, i] - 1, minlength=N_OPTIONS) / len(answers) for i in range(N_ITEMS)])


def synthetic_profiles(train: np.ndarray, held: np.ndarray, model: RespondentModel, n: int, seed: int,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """``n`` integer profiles from the training countries' mean and covariance, in the respondent model's range and
    at least SYNTHETIC_MIN_L1 from every held-out country (drawn with ``rng``, else with a generator seeded by
    ``seed``)."""
    rng = np.random.default_rng(seed + 1) if rng is None else rng
    mean, cov = train.mean(axis=0), np.cov(train.T)
    out = []
    while len(out) < n:
        s = np.clip(np.rint(rng.multivariate_normal(mean, cov)), 0, 120)
        mu = model.means(s)[0]
        if mu.min() < 1.1 or mu.max() > 4.9 or np.abs(held - s).sum(axis=1).min() < SYNTHETIC_MIN_L1:
            continue
        out.append(s)
    return np.array(out)


def conditioned_rows(questionnaire: Questionnaire, tokenizer, text: str | None, position: str = "system",
                     labels: str = "letters") -> list[SurveyRow]:
    """The 24 survey rows (options in ORDER) with ``text`` in the system prompt, or in the user turn before or
    after the item; ``text`` None: the untold model (the naive prompt)."""
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}")
    rows = []
    for item in questionnaire.items:
        user = user_message(item, LABELS[labels], ORDER == "reverse")
        system = None
        if text is not None:
            if position == "system":
                system = text
            elif position == "before":
                user = f"{text}\n\n{user}"
            else:
                user = f"{user}\n\n{text}"
        head, tail = render_chat(tokenizer, system, user)
        rows.append(SurveyRow(item.id, ORDER == "reverse", head, tail))
    return rows


@dataclass
class PlantedWorld:
    """Everything the planted model is trained on and measured against (deterministic given the seed)."""

    train: list[str]
    held_out: list[str]
    constants: np.ndarray
    respondent_model: RespondentModel
    synthetic: np.ndarray

    @classmethod
    def build(cls, seed: int = 0, n_synthetic: int = N_SYNTHETIC) -> "PlantedWorld":
        train, held = split(seed)
        q = Questionnaire.builtin()
        constants = np.mean([lookup(c).vector() for c in train], axis=0)
        model = RespondentModel(q, constants, seed)
        synthetic = synthetic_profiles(np.array([lookup(c).vector() for c in train]),
                                       np.array([lookup(c).vector() for c in held]), model, n_synthetic, seed)
        return cls(train, held, constants, model, synthetic)

    def draw(self, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        """``n`` fresh synthetic profiles (the same distribution and distance rule as :attr:`synthetic`)."""
        return synthetic_profiles(np.array([lookup(c).vector() for c in self.train]),
                                  np.array([lookup(c).vector() for c in self.held_out]), self.respondent_model, n, 0,
                                  rng=rng)

    def profiles(self) -> list[tuple[str, np.ndarray]]:
        """The training profiles: (name, scores) of the training countries, then the synthetic ones."""
        return ([(c, lookup(c).vector()) for c in self.train]
                + [(f"synthetic-{i}", s) for i, s in enumerate(self.synthetic)])

    def target(self, name: str, scores, seed: int) -> np.ndarray:
        """The ``(24, 5)`` empirical distribution of a profile's simulated respondents."""
        key = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
        return distribution(self.respondent_model.respondents(scores, seed=seed * 1_000_003 + key))

    def untold_target(self, seed: int) -> np.ndarray:
        """Pooled respondents of every training country (means = the mean profile's = 3 on every item)."""
        return np.mean([self.target(c, lookup(c).vector(), seed) for c in self.train], axis=0)


class SurveyTemplates:
    """Whole surveys (24 rows, forward order) as left-padded token ids, one template per position plus the untold
    rows; a profile's survey is its position's template with the six score tokens put in (each stated score is one
    token, see :func:`score_tokens`), so any profile can be drawn without tokenising text."""

    def __init__(self, tokenizer, first_score_id: int):
        q = Questionnaire.builtin()
        encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        self.first_score_id = first_score_id
        probe = scores_text(np.full(len(DIMENSIONS), 60))
        seqs = []
        for position in ("untold", *POSITIONS):
            rows = conditioned_rows(q, tokenizer, None if position == "untold" else probe,
                                    "system" if position == "untold" else position)
            seqs += [encode(r.head) + encode(r.tail) for r in rows]
        ids, mask, positions = left_pad(seqs, tokenizer.pad_token_id)
        shape = (1 + len(POSITIONS), N_ITEMS, ids.shape[1])
        self.ids, self.mask, self.positions = ids.view(shape), mask.view(shape), positions.view(shape)
        slots = [torch.nonzero(row >= first_score_id).flatten() for row in self.ids[1:].reshape(-1, shape[2])]
        if any(len(x) != len(DIMENSIONS) for x in slots):
            raise ValueError("every conditioned row must hold exactly six score tokens")
        self.slots = torch.stack(slots).view(len(POSITIONS), N_ITEMS, len(DIMENSIONS))

    def survey(self, position: str, scores=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, mask, position ids), each ``(24, L)``: ``scores`` stated in ``position``, or untold (None)."""
        n = N_ITEMS
        return self.rows(["untold" if scores is None else position] * n, list(range(n)), [scores] * n)

    def rows(self, positions: list[str], items: list[int], scores: list) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        """(ids, mask, position ids), each ``(len(items), L)``: row ``r`` is item ``items[r]`` (0-based) with
        ``scores[r]`` stated in ``positions[r]``, or untold (position "untold", scores None)."""
        k = torch.tensor([0 if p == "untold" else 1 + POSITIONS.index(p) for p in positions])
        i = torch.tensor(items)
        ids = self.ids[k, i].clone()
        told = torch.nonzero(k > 0).flatten()
        if len(told):
            values = np.clip(np.rint(np.array([scores[r] for r in told.tolist()], dtype=float)), SCORE_VALUES[0],
                             SCORE_VALUES[-1]).astype(int)
            tokens = self.first_score_id + np.arange(len(DIMENSIONS)) * len(SCORE_VALUES) + values
            ids[told[:, None], self.slots[k[told] - 1, i[told]]] = torch.from_numpy(tokens)
        return ids, self.mask[k, i], self.positions[k, i]


SCORE_VALUES = range(0, 121)


def score_tokens() -> list[str]:
    """The tokenizer's added tokens "PDI 0" ... "IVR 120": each stated score is one token (dimension-major order)."""
    return [f"{d} {v}" for d in DIMENSIONS for v in SCORE_VALUES]


def score_embedding_rows(base: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """The embedding rows of :func:`score_tokens`: ``base[d] + (v - 60) / 30 * slope[d]`` for dimension d and
    score v, ``(6 * 121, hidden)``. Linear in the score, so a score never seen in training (a held-out country's)
    still has a meaningful embedding."""
    values = (torch.tensor(list(SCORE_VALUES), dtype=base.dtype) - 60.0) / 30.0
    return (base[:, None, :] + values[None, :, None] * slope[:, None, :]).reshape(-1, base.shape[1])


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids), each (len(seqs), longest)."""
    length = max(map(len, seqs))
    input_ids = torch.full((len(seqs), length), pad_id)
    mask = torch.zeros(len(seqs), length, dtype=torch.long)
    for i, seq in enumerate(seqs):
        input_ids[i, length - len(seq):], mask[i, length - len(seq):] = torch.tensor(seq), 1
    return input_ids, mask, (mask.cumsum(1) - 1).clamp(min=0)


DEFAULT_TRAINING = dict(steps=12000, hidden=64, layers=2, seed=0, lr=3e-3, batch=32, index_weight=0.3,
                        country_share=0.3, untold_share=0.05, n_synthetic=N_SYNTHETIC, log_every=500)
N_VALIDATION = 8              # fresh synthetic profiles (never trained on) whose stated-score loss is logged


def recipe_key(**settings) -> tuple[dict, str]:
    recipe = {**DEFAULT_TRAINING, **settings, "respondents": N_RESPONDENTS, "spread": SPREAD, "style": STYLE,
              "baseline": BASELINE, "trait": TRAIT, "noise": NOISE, "positions": POSITIONS, "order": ORDER,
              "extra_held_out": N_EXTRA_HELD_OUT, "min_l1": SYNTHETIC_MIN_L1, "version": RECIPE_VERSION}
    return recipe, hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def draw_rows(world: PlantedWorld, rng: np.random.Generator, targets: dict, untold: np.ndarray, n: int,
              recipe: dict) -> tuple[list[str], list[int], list, np.ndarray]:
    """``n`` training rows (positions, 0-based items, scores or None, ``(n, 5)`` targets), each its own draw:
    untold with probability ``untold_share``, else a training country with probability ``country_share``, else a
    synthetic profile; the position and the item drawn uniformly. ``targets``: name -> ``(24, 5)`` distribution
    (:meth:`PlantedWorld.profiles` names)."""
    synthetic = len(world.synthetic)
    positions, items, scores, out = [], [], [], []
    for _ in range(n):
        item = int(rng.integers(N_ITEMS))
        if rng.random() < recipe["untold_share"]:
            positions.append("untold"), scores.append(None), out.append(untold[item])
        else:
            if rng.random() < recipe["country_share"] or not synthetic:
                name = world.train[int(rng.integers(len(world.train)))]
                profile = lookup(name).vector()
            else:
                j = int(rng.integers(synthetic))
                name, profile = f"synthetic-{j}", world.synthetic[j]
            positions.append(POSITIONS[int(rng.integers(len(POSITIONS)))]), scores.append(profile)
            out.append(targets[name][item])
        items.append(item)
    return positions, items, scores, np.array(out)


def train_planted(verbose: bool = True, **settings) -> LoadedModel:
    """Train (or load from the cache, keyed by a hash of every setting) the planted-culture model: a Llama of
    ``layers`` x ``hidden`` with a BPE tokenizer (each stated score one token), ``batch`` rows per step drawn by
    :func:`draw_rows`, against the respondents' answer distributions (loss: see the module docstring). The folder
    also holds ``planted.json`` (the split,
    the constants, the training log) and ``constants.json`` (the constants C, for ``--constants``)."""
    recipe, key = recipe_key(**settings)
    folder = cache_dir() / "planted" / key
    if (folder / "config.json").is_file() and (folder / "planted.json").is_file():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return LoadedModel(AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder),
                           f"planted-culture-{key}", str(folder))
    steps, seed, lr, batch = recipe["steps"], recipe["seed"], recipe["lr"], recipe["batch"]
    torch.manual_seed(seed)
    world = PlantedWorld.build(seed, n_synthetic=recipe["n_synthetic"])
    q = Questionnaire.builtin()
    tokenizer = make_tokenizer(extra_text=[NEUTRAL_TEXT] * 3, vocab_size=2000)
    first_score_id = len(tokenizer)
    tokenizer.add_tokens(score_tokens())
    model = make_model(tokenizer, seed=seed, hidden=recipe["hidden"], layers=recipe["layers"], heads=4,
                       head_scale=1.0, mlp_ratio=4)
    templates = SurveyTemplates(tokenizer, first_score_id)
    option_ids = torch.tensor(SurveyScorer(model, tokenizer, conditioned_rows(q, tokenizer, None)[:1],
                                           LABELS["letters"]).option_ids)
    answers = torch.arange(1, N_OPTIONS + 1, dtype=torch.float32)
    weight_norm = torch.tensor(np.linalg.norm(q.weight_matrix(), axis=0), dtype=torch.float32)   # (24,)
    rng = np.random.default_rng(seed + 2)
    targets = {name: world.target(name, scores, seed) for name, scores in world.profiles()}
    untold = world.untold_target(seed)
    validation = world.draw(np.random.default_rng(seed + 3), N_VALIDATION)          # never trained on
    embedding = model.get_input_embeddings()
    scale = float(embedding.weight.std())
    gen = torch.Generator().manual_seed(seed)
    score_base = torch.nn.Parameter(torch.randn(len(DIMENSIONS), recipe["hidden"], generator=gen) * scale)
    score_slope = torch.nn.Parameter(torch.randn(len(DIMENSIONS), recipe["hidden"], generator=gen) * scale)

    def weights() -> torch.Tensor:
        return torch.cat([embedding.weight[:first_score_id], score_embedding_rows(score_base, score_slope)])

    def logprobs(ids, mask, positions) -> torch.Tensor:
        """log-probabilities of the five options (full vocabulary), ``(rows, 5)``."""
        keep = mask.sum(0) > 0   # drop columns that are padding in every row
        ids, mask, positions = ids[:, keep], mask[:, keep], positions[:, keep]
        embeds = torch.nn.functional.embedding(ids, weights())
        logits = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
        return torch.log_softmax(logits[:, -1], -1)[:, option_ids]

    def survey_logprobs(surveys) -> torch.Tensor:
        return logprobs(*(torch.cat(x) for x in zip(*surveys)))

    @torch.no_grad()
    def validation_loss() -> dict[str, float]:
        """Mean L1 (index points) over the validation profiles of the prompt stating their scores, per position."""
        model.eval()
        losses = {}
        for position in POSITIONS:
            logp = survey_logprobs([templates.survey(position, v) for v in validation])
            means = (torch.softmax(logp, -1) @ answers).view(len(validation), N_ITEMS).double().numpy()
            losses[position] = float(np.abs(q.indices(means, world.constants) - validation).sum(axis=1).mean())
        model.train()
        return losses

    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW([*model.parameters(), score_base, score_slope], lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    start, log, entropies = time.time(), [], []
    for step in range(steps):
        positions, items, scores, target = draw_rows(world, rng, targets, untold, batch, recipe)
        target = torch.tensor(target, dtype=torch.float32)
        entropies.append(float(-(target * torch.log(target.clamp(min=1e-12))).sum(-1).mean()))
        logp = logprobs(*templates.rows(positions, items, scores))
        cross_entropy = -(target * logp).sum(-1).mean()  # over the full vocabulary: mass goes to the options
        # the error of the expected answer, scaled by how much the item weighs in the index formulas
        error = ((torch.softmax(logp, -1) - target) @ answers) * weight_norm[torch.tensor(items)]
        index_loss = torch.nn.functional.huber_loss(error, torch.zeros_like(error), delta=1.0)
        loss = cross_entropy + recipe["index_weight"] * index_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if step % recipe["log_every"] == 0 or step == steps - 1:
            entry = {"step": step, "cross_entropy": cross_entropy.item(), "index_huber": index_loss.item(),
                     "validation_l1": validation_loss(), "seconds": time.time() - start}
            log.append(entry)
            if verbose:
                print(f"step {step}: cross-entropy {entry['cross_entropy']:.3f}, index Huber "
                      f"{entry['index_huber']:.2f}, validation stated-score L1 " + ", ".join(
                          f"{k} {v:.1f}" for k, v in entry["validation_l1"].items())
                      + f" ({entry['seconds']:.0f} s)", flush=True)
    with torch.no_grad():
        embedding.weight.copy_(weights())   # the score tokens' rows, linear in the score, into the saved model
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = {"recipe": recipe, "train": world.train, "held_out": world.held_out,
            "constants": dict(zip(DIMENSIONS, map(float, world.constants))), "rows": steps * batch,
            "training_seconds": time.time() - start, "threads": torch.get_num_threads(), "log": log,
            "target_entropy": float(np.mean(entropies))}
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "constants.json").write_text(json.dumps(info["constants"]))
    (folder / "planted.json").write_text(json.dumps(info, indent=1))
    return LoadedModel(model, tokenizer, f"planted-culture-{key}", str(folder))


def planted_info(lm: LoadedModel) -> dict:
    return json.loads((Path(lm.resolved_path) / "planted.json").read_text())


def planted_session(lm: LoadedModel):
    """The measurement session for the planted model: its option order and its constants C (the training
    countries' mean profile, from the model folder's constants.json)."""
    from culturealign.config import MeasureConfig
    from culturealign.session import Session

    return Session(MeasureConfig(model=lm.resolved_path, constants=str(Path(lm.resolved_path) / "constants.json"),
                                 order=ORDER), lm=lm)


def hard_prompt_losses(session, country: str) -> dict[str, float]:
    """L1 loss of the prompt that states the country's scores, in each training position (and untold)."""
    target = lookup(country)
    objective = session.objective(target)
    lm, q = session.lm, session.questionnaire
    out = {}
    for position in ("untold", *POSITIONS):
        text = None if position == "untold" else scores_text(target.vector())
        rows = conditioned_rows(q, lm.tokenizer, text, "system" if text is None else position)
        probs = SurveyScorer(lm.model, lm.tokenizer, rows, LABELS["letters"]).score().probs[0]
        out[position] = float(objective.loss((probs @ np.arange(1, 6))[None])[0])
    return out


def respondent_floor(session, world: PlantedWorld, country: str, seed: int = 0) -> float:
    """L1 loss of the respondents' own empirical distributions: the best a model trained on them can do."""
    target = lookup(country)
    dist = world.target(target.name, target.vector(), seed)
    return float(session.objective(target).loss((dist @ np.arange(1, 6))[None])[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=DEFAULT_TRAINING["steps"])
    ap.add_argument("--hidden", type=int, default=DEFAULT_TRAINING["hidden"], help="model width")
    ap.add_argument("--layers", type=int, default=DEFAULT_TRAINING["layers"])
    ap.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.time()
    settings = {k: getattr(args, k) for k in ("steps", "hidden", "layers") if getattr(args, k) != DEFAULT_TRAINING[k]}
    lm = train_planted(**settings)
    info = planted_info(lm)
    print(f"trained/loaded in {time.time() - start:.0f} s: {lm.resolved_path}")
    session = planted_session(lm)
    world = PlantedWorld.build(info["recipe"]["seed"])
    lines = ["| country | split | untold (naive) | scores in system prompt | scores before the item | "
             "scores after the item | respondents (floor) | reference mean |", "|---|---|---|---|---|---|---|---|"]
    shown = [(c, "held out") for c in world.held_out] + [(c, "training") for c in world.train[:4]]
    best, reference = {}, {}
    for c, kind in shown:
        reference[c] = session.objective(lookup(c)).reference_mean_loss()
        h = hard_prompt_losses(session, c)
        best[c] = min(h[p] for p in POSITIONS)
        lines.append(f"| {c} | {kind} | {h['untold']:.1f} | {h['system']:.1f} | {h['before']:.1f} | {h['after']:.1f} | "
                     f"{respondent_floor(session, world, c):.2f} | "
                     f"{session.objective(lookup(c)).reference_mean_loss():.1f} |")
        print(lines[-1], flush=True)
    held = [c for c, k in shown if k == "held out"]
    log = info["log"]
    recipe = info["recipe"]
    last = log[-1]
    held_best = [best[c] for c in held]
    body = (f"### The planted-culture model\n\nCommand: `{_command()}` ({info['training_seconds']:.0f} s of training "
            f"with {info['threads']} thread(s), then cached; the training shared the machine with other jobs)  \n"
            f"Machine: {_machine()}\n\n"
            f"Trained on {len(world.train)} countries and {len(world.synthetic)} synthetic profiles (simulated "
            f"respondents), {recipe['steps']} steps of {recipe['batch']} rows, each row its own (profile, position, "
            f"item); loss: cross-entropy + {recipe['index_weight']} x Huber of the index-weighted expected-answer "
            f"error. Final batch cross-entropy {last['cross_entropy']:.3f} (targets' entropy "
            f"{info['target_entropy']:.3f}, the floor); stated-score L1 on {N_VALIDATION} fresh synthetic validation "
            f"profiles: " + ", ".join(f"{k} {v:.1f}" for k, v in last["validation_l1"].items())
            + f". Held out: {', '.join(world.held_out)}. L1 loss (index points) under the planted constants C (the "
            "training countries' mean profile).\n\n"
            + "\n".join(lines) + f"\n\nA prompt stating a held-out country's scores (best of the three positions) "
            f"reaches a mean L1 loss of {np.mean(held_best):.1f} (worst {max(held_best):.1f}, "
            f"{sum(b <= 12 for b in held_best)} of {len(held)} within 12, about 2 points per dimension), against "
            f"{np.mean([reference[c] for c in held]):.1f} for the reference-mean predictor.")
    print(body)
    if not args.no_write:
        from common import write_section

        write_section("planted", body)


def _command() -> str:
    from common import command

    return command()


def _machine() -> str:
    from common import machine

    return machine()


if __name__ == "__main__":
    main()
