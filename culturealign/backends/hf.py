"""The Hugging Face transformers backend (``hf``): :class:`HFBackend` and its scorer, :class:`SurveyScorer`.

The scorer reads option distributions for survey rows, with optional soft prompts.

For each row (a chat prompt ending where the answer starts) the model's next-token distribution is read at
the five option tokens and renormalised. When an option label is not a single token, each option is scored by
its sequence log-likelihood instead. Soft prompts come as a batch ``(P, n_tokens, hidden)`` and are placed

- ``prefix``: before every token (prompt tuning / PEFT placement); the key-value cache of
  [soft prompt + the prefix all rows share] is computed once per candidate and reused for the rows, and within a
  batch the rows of one item (its option orders) share a second cache of their common stem (the item's text up to
  where the options differ), so that each row runs only its own tail;
- ``suffix``: after the item text, before the end of the user's turn; the key-value cache of every row's head
  is computed once per scorer and reused for every candidate, so a candidate costs only its own tokens.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..compat import cache_kwargs, checkpointing_disable, checkpointing_enable, output_cache
from ..config import DEFAULT_LABELS
from ..errors import CultureAlignError
from ..prompts import LABELS, SurveyRow, render_chat
from .base import PLACEMENTS, Backend, RowScores, check_soft, label_token_ids, place_soft_prompt  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from ..models import LoadedModel
    from ..softprompt import SoftPrompt


class SurveyScorer:
    """Scores a fixed list of survey rows with a frozen causal LM.

    Parameters
    ----------
    model, tokenizer: a Hugging Face causal LM (frozen, eval mode) and its tokenizer.
    rows: the survey rows (see :func:`culturealign.prompts.build_rows`).
    labels: the option labels in listed order, e.g. ``["1", ..., "5"]``.
    batch_size: most sequences per forward pass.
    max_memory_mb: optional memory limit; batches shrink so that the estimated key-value cache and activations of a
        forward pass stay under it (see :meth:`batch_for`).
    use_cache: reuse key-value caches of shared prefixes (results agree with the uncached path to ~1e-5).
    scoring: ``"auto"`` (next token when every label is one token, else sequence), ``"next_token"`` or ``"sequence"``.
    """

    def __init__(self, model, tokenizer, rows: Sequence[SurveyRow], labels: Sequence[str] = LABELS[DEFAULT_LABELS.value],
                 batch_size: int = 24, use_cache: bool = True, scoring: str = "auto",
                 max_memory_mb: float | None = None):
        self.model, self.tokenizer, self.rows = model, tokenizer, list(rows)
        if int(batch_size) < 1:
            raise CultureAlignError(f"--batch-size must be at least 1, not {batch_size}")
        self.labels, self.batch_size, self.use_cache = list(labels), int(batch_size), use_cache
        self.max_memory_mb = max_memory_mb
        self.embedding = model.get_input_embeddings()
        self.hidden_size = self.embedding.weight.shape[1]
        self.device = self.embedding.weight.device
        self.dtype = self.embedding.weight.dtype
        encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        self.head_ids = [encode(r.head) for r in self.rows]
        self.tail_ids = [encode(r.tail) for r in self.rows]
        self.option_ids, space_moved = label_token_ids(encode, self.rows, self.labels)
        if self.option_ids is not None and space_moved:
            # a tail ending in a space ("Answer: "): the space belongs to the label, as in the text "Answer: A"
            self.tail_ids = [encode(r.tail[:-1]) for r in self.rows]
        if scoring == "next_token" and self.option_ids is None:
            raise CultureAlignError(f"option labels {self.labels} are not single tokens for this tokenizer; "
                                    "use scoring 'sequence' or 'auto'")
        self.mode = "sequence" if scoring == "sequence" or self.option_ids is None else "next_token"
        self.continuations = [encode(label) for label in self.labels]
        self._head_cache = None  # suffix placement: KV of every row's head, built on first use
        self._stems = None       # prefix placement: per row, the stem it shares with its item's other rows

    # ---- public API -------------------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @torch.no_grad()
    def score(self, soft_prompts: torch.Tensor | None = None, placement: str = "prefix") -> RowScores:
        """Option distributions for every candidate soft prompt and row.

        soft_prompts: ``(P, n_tokens, hidden)`` or None (the plain model, P = 1).
        Returns :class:`RowScores` with ``probs`` of shape ``(P, n_rows, 5)``.
        """
        soft = self._check_soft(soft_prompts, placement)
        if self.mode == "sequence":
            return self._score_sequences(soft, placement)
        if not self.use_cache:
            return self._score_uncached(soft, placement)
        if soft.shape[1] == 0 or placement == "prefix":
            return self._score_prefix_cached(soft)
        return self._score_suffix_cached(soft)

    def sequence_embeds(self, soft_prompt: torch.Tensor | None, row: int, placement: str = "prefix") -> torch.Tensor:
        """Input embeddings ``(L, hidden)`` of one row with one soft prompt ``(n_tokens, hidden)`` placed."""
        return place_soft_prompt(self._embed(self.head_ids[row]), self._embed(self.tail_ids[row]), soft_prompt,
                                 placement)

    def differentiable_probs(self, soft_prompts: torch.Tensor, placement: str,
                             pairs: Sequence[tuple[int, int]] | None = None,
                             checkpointing: bool = False) -> torch.Tensor:
        """Option probabilities ``(len(pairs), 5)`` in listed order, differentiable with respect to the prompts.

        soft_prompts: ``(P, n_tokens, hidden)``, usually an fp32 leaf with ``requires_grad`` (cast to the model's
        dtype inside, so a bf16 model trains an fp32 master copy). pairs: ``(candidate, row)`` to score in one
        forward pass (default: every candidate with every row); the caller micro-batches. The suffix path reuses
        the rows' head key-value cache (it does not depend on the prompt); ``checkpointing`` recomputes each
        layer's activations in the backward pass instead of keeping them (uncached sequences: Hugging Face
        checkpointing cannot keep a cache).
        """
        if self.mode != "next_token":
            raise CultureAlignError("gradients need option labels that are single tokens for this tokenizer "
                                    "(sequence scoring is not differentiable here): use --labels letters or digits, "
                                    "or a black-box optimiser (--optimizer cma, de or random)")
        soft = self._check_soft(soft_prompts, placement)
        pairs = list(pairs) if pairs is not None else self._pairs(soft.shape[0])
        if checkpointing or not self.use_cache:
            with activation_checkpointing(self.model, checkpointing):
                logits = self._uncached_logits(soft, pairs, placement, use_cache=not checkpointing)
        elif soft.shape[1] > 0 and placement == "suffix":
            logits = self._suffix_logits(soft, pairs)
        else:
            candidates = sorted({c for c, _ in pairs})
            prefix_cache, prefix_mask, rest = self._prefix_cache(soft[candidates])
            index = torch.tensor([candidates.index(c) for c, _ in pairs], device=self.device)
            logits = self._after_prefix_logits(prefix_cache, prefix_mask, index, [rest[r] for _, r in pairs],
                                               [r for _, r in pairs])
        return self._option_scores(logits)[0]

    @torch.no_grad()
    def sample(self, soft_prompt: torch.Tensor | None, placement: str, n_samples: int, seed: int = 0,
               max_new_tokens: int = 8, temperature: float = 1.0) -> list[list[str]]:
        """``n_samples`` sampled replies per row (pure sampling: top-k and top-p off), with one soft prompt
        ``(n_tokens, hidden)`` (or None) placed; one torch seed for the whole pass."""
        torch.manual_seed(seed)
        replies = []
        for r in range(self.n_rows):
            embeds = self.sequence_embeds(soft_prompt, r, placement).unsqueeze(0)
            out = self.model.generate(inputs_embeds=embeds, attention_mask=torch.ones(
                                      embeds.shape[:2], dtype=torch.long, device=embeds.device), do_sample=True,
                                      temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                                      num_return_sequences=n_samples, pad_token_id=self.tokenizer.pad_token_id)
            # generating from inputs_embeds returns only the new tokens
            replies.append(self.tokenizer.batch_decode(out, skip_special_tokens=True))
        return replies

    # ---- checks -----------------------------------------------------------------------------------------------
    def _check_soft(self, soft: torch.Tensor | None, placement: str) -> torch.Tensor:
        soft = check_soft(soft, placement, self.hidden_size)
        if soft is None:
            return torch.zeros(1, 0, self.hidden_size, device=self.device, dtype=self.dtype)
        return soft.to(self.device, self.dtype)

    def _embed(self, ids: Sequence[int]) -> torch.Tensor:
        return self.embedding(torch.tensor(ids, dtype=torch.long, device=self.device))

    # ---- batching under a memory limit ----------------------------------------------------------------------------
    def sequence_bytes(self, cached: int, new: int, keep: int = 1, grad: bool = False,
                       checkpointing: bool = False) -> int:
        """Estimated bytes one sequence needs in a forward pass: its copy of a cached prefix and its own key-value
        entries, hidden activations of the new tokens, and the kept logits. With ``grad`` the activations of every
        layer are kept for the backward pass (with ``checkpointing`` only each layer's input, plus one layer's)."""
        cfg = self.model.config
        layers = getattr(cfg, "num_hidden_layers", 1)
        heads = getattr(cfg, "num_attention_heads", 1)
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or self.hidden_size // heads
        inter = getattr(cfg, "intermediate_size", 4 * self.hidden_size)
        width = torch.finfo(self.dtype).bits // 8
        kv = 2 * layers * kv_heads * head_dim * (cached + new) * width
        activations = new * (4 * self.hidden_size + 2 * inter) * width + heads * new * (cached + new) * width
        if grad:
            activations = (activations + layers * new * self.hidden_size * width if checkpointing
                           else 3 * layers * activations)  # saved tensors are ~3x one layer's working set
        return kv + activations + keep * cfg.vocab_size * 4

    def batch_for(self, cached: int, new: int, keep: int = 1, grad: bool = False,
                  checkpointing: bool = False, at_least_one: bool = False) -> int:
        """Sequences per forward pass: ``batch_size``, reduced to fit ``max_memory_mb`` when it is set (below one
        sequence an error, or one sequence with ``at_least_one``)."""
        if not self.max_memory_mb:
            return self.batch_size
        need = max(1, self.sequence_bytes(cached, new, keep, grad, checkpointing))
        fit = int(self.max_memory_mb * 2 ** 20 // need)
        if fit < 1 and at_least_one:
            return 1
        if fit < 1:
            raise CultureAlignError(f"--max-memory {self.max_memory_mb:g} MB is too small for one sequence of "
                                    f"{cached + new} tokens (needs ~{need / 2**20:.0f} MB)")
        return min(self.batch_size, fit)

    def grad_batch(self, n_tokens: int, placement: str, checkpointing: bool = False) -> int:
        """Sequences per forward+backward pass under the memory limit (the gradient path's micro-batch)."""
        longest = max(len(h) + len(t) for h, t in zip(self.head_ids, self.tail_ids)) + n_tokens
        if placement == "suffix" and self.use_cache and not checkpointing:
            head = max(len(h) for h in self.head_ids)
            return self.batch_for(head, longest - head, grad=True)
        return self.batch_for(0, longest, grad=True, checkpointing=checkpointing)

    def _batches(self, units: list, cached: int, new: int, keep: int = 1):
        size = self.batch_for(cached, new, keep)
        for start in range(0, len(units), size):
            yield units[start:start + size]

    # ---- forward helpers --------------------------------------------------------------------------------------
    def _pairs(self, n_candidates: int) -> list[tuple[int, int]]:
        return [(p, r) for p in range(n_candidates) for r in range(self.n_rows)]

    def _left_pad(self, seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(s.shape[0] for s in seqs)
        embeds = torch.zeros(len(seqs), length, self.hidden_size, device=self.device, dtype=self.dtype)
        mask = torch.zeros(len(seqs), length, dtype=torch.long, device=self.device)
        for i, s in enumerate(seqs):
            embeds[i, length - s.shape[0]:] = s
            mask[i, length - s.shape[0]:] = 1
        return embeds, mask

    def _forward(self, embeds, mask, past=None, past_mask=None, keep: int = 1, use_cache: bool = True):
        """Run the model on left-padded ``embeds`` after an optional cache; returns (logits of the last
        ``keep`` positions, new cache)."""
        from transformers import DynamicCache

        if past is None:
            full_mask, offset = mask, 0
        else:
            full_mask = torch.cat([past_mask, mask], dim=1)
            offset = past_mask.sum(dim=1, keepdim=True)
        positions = (offset + mask.cumsum(dim=1) - 1).clamp(min=0)
        if not use_cache:
            out = self.model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions, use_cache=False,
                             logits_to_keep=keep)
            return _at_least_fp32(out.logits), None
        cache = DynamicCache(ddp_cache_data=past) if past is not None else DynamicCache()
        out = self.model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions,
                         use_cache=True, logits_to_keep=keep, **cache_kwargs(self.model, cache))
        return _at_least_fp32(out.logits), output_cache(out)

    def _option_scores(self, last_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logprobs = torch.log_softmax(last_logits, dim=-1)[:, self.option_ids]
        mass = logprobs.exp().sum(-1)
        return torch.softmax(logprobs, dim=-1), mass

    @staticmethod
    def _gather_cache(cache, index: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.keys.index_select(0, index), layer.values.index_select(0, index)) for layer in cache.layers]

    def _collect(self, n_candidates: int, chunks) -> RowScores:
        probs = np.zeros((n_candidates, self.n_rows, len(self.labels)))
        mass = np.full((n_candidates, self.n_rows), np.nan)
        for pairs, p, m in chunks:
            for (c, r), pr, ms in zip(pairs, p.cpu().numpy(), m.cpu().numpy()):
                probs[c, r], mass[c, r] = pr, ms
        return RowScores(probs, mass)

    # ---- the three next-token paths (one batch each; shared by scoring and the gradient path) ------------------
    def _uncached_logits(self, soft: torch.Tensor, pairs, placement: str, use_cache: bool = True) -> torch.Tensor:
        """Last-position logits of whole sequences (soft prompt placed), one per ``(candidate, row)`` pair."""
        embeds, mask = self._left_pad([self.sequence_embeds(soft[c], r, placement) for c, r in pairs])
        return self._forward(embeds, mask, use_cache=use_cache)[0][:, -1]

    def _prefix_cache(self, soft: torch.Tensor):
        """Key-value cache of [soft prompt + the prefix every row shares] per candidate, its mask, and each row's
        remaining embeddings."""
        shared = _common_prefix(self.head_ids)
        rest = [self._embed(self.head_ids[r][len(shared):] + self.tail_ids[r]) for r in range(self.n_rows)]
        prefix = torch.cat([soft, self._embed(shared).unsqueeze(0).expand(soft.shape[0], -1, -1)], dim=1)
        prefix_mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=self.device)
        return self._forward(prefix, prefix_mask)[1], prefix_mask, rest

    @property
    def stem_lengths(self) -> list[int]:
        """Per row, how many of its tokens after the shared prefix it has in common with the other rows of its item
        (the other option orders): its stem, run once per batch for all of them. At least one token of every row
        stays its own (the logits are read at its last). 0 for a row without a sibling."""
        if self._stems is None:
            shared = len(_common_prefix(self.head_ids))
            rest = [self.head_ids[r][shared:] + self.tail_ids[r] for r in range(self.n_rows)]
            by_item: dict = {}
            for r, row in enumerate(self.rows):
                by_item.setdefault(row.item, []).append(r)
            self._stems = [0] * self.n_rows
            for rows in by_item.values():
                if len(rows) > 1:
                    n = min(len(_common_prefix([rest[r] for r in rows])), *(len(rest[r]) - 1 for r in rows))
                    for r in rows:
                        self._stems[r] = n
        return self._stems

    def ordered_for_stems(self, pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        """``pairs`` with the rows of one item (and candidate) next to each other, so that a batch shares stems, and
        items in order of stem length, so that a batch pads its stems less."""
        return sorted(pairs, key=lambda cr: (cr[0], self.stem_lengths[cr[1]], self.rows[cr[1]].item, cr[1]))

    def _after_prefix_logits(self, prefix_cache, prefix_mask, index: torch.Tensor, rest: list,
                             rows: Sequence[int] | None = None) -> torch.Tensor:
        """Last-position logits of rows ``rest`` after the prefix caches of candidates ``index``. With ``rows``
        (their row numbers), rows of one item and candidate in the batch first run their common stem once, then
        each its own tail on the stem's cache (same numbers, fewer tokens); stems of similar length (within
        :data:`STEM_BUCKET_WIDTH`) run in one pass, so that few pad tokens are run."""
        stems = None if rows is None else [self.stem_lengths[r] for r in rows]
        groups: dict = {}
        if stems is not None:
            for i, (c, r) in enumerate(zip(index.tolist(), rows)):
                if stems[i]:
                    groups.setdefault((c, self.rows[r].item), []).append(i)
        if not any(len(g) > 1 for g in groups.values()):   # nothing shared in this batch
            embeds, mask = self._left_pad(rest)
            return self._forward(embeds, mask, self._gather_cache(prefix_cache, index),
                                 prefix_mask.index_select(0, index))[0][:, -1]
        # one stem per (candidate, item) with at least two rows here; a row alone keeps an empty stem
        units, unit_of, seen = [], [], {}   # units: (stem length, the row whose first tokens are the stem)
        for i in range(len(rest)):
            key = (int(index[i]), self.rows[rows[i]].item)
            if len(groups.get(key, ())) < 2:
                key = ("alone", i)
            if key not in seen:
                seen[key] = len(units)
                units.append((stems[i] if key[0] != "alone" else 0, i))
            unit_of.append(seen[key])
        # stems of similar length run together (a batch pads every stem to its longest), each bucket's tails on it
        logits, order = [], []
        alone = [i for i, u in enumerate(unit_of) if units[u][0] == 0]
        if alone:   # rows without a sibling here: their whole rest on the prefix cache
            at = index[torch.tensor(alone, device=self.device)]
            embeds, mask = self._left_pad([rest[i] for i in alone])
            logits.append(self._forward(embeds, mask, self._gather_cache(prefix_cache, at),
                                        prefix_mask.index_select(0, at))[0][:, -1])
            order += alone
        lengths = [n for n, _ in units]
        for bucket in _length_buckets(lengths, STEM_BUCKET_WIDTH, skip_empty=True):
            local = {u: k for k, u in enumerate(bucket)}
            rows_here = [i for i, u in enumerate(unit_of) if u in local]
            stem_index = index[torch.tensor([units[u][1] for u in bucket], device=self.device)]   # no sync per unit
            stem_embeds, stem_mask = self._left_pad([rest[units[u][1]][:units[u][0]] for u in bucket])
            stem_cache = self._forward(stem_embeds, stem_mask, self._gather_cache(prefix_cache, stem_index),
                                       prefix_mask.index_select(0, stem_index))[1]
            stem_full_mask = torch.cat([prefix_mask.index_select(0, stem_index), stem_mask], dim=1)
            at = torch.tensor([local[unit_of[i]] for i in rows_here], device=self.device)
            tails, tail_mask = self._left_pad([rest[i][units[unit_of[i]][0]:] for i in rows_here])
            logits.append(self._forward(tails, tail_mask, self._gather_cache(stem_cache, at),
                                        stem_full_mask.index_select(0, at))[0][:, -1])
            order += rows_here
        back = torch.empty(len(order), dtype=torch.long, device=self.device)
        back[torch.tensor(order, device=self.device)] = torch.arange(len(order), device=self.device)
        return torch.cat(logits).index_select(0, back)

    def _suffix_logits(self, soft: torch.Tensor, pairs) -> torch.Tensor:
        """Last-position logits of [soft prompt + tail] after each row's cached head."""
        head_cache, head_mask = self._suffix_head_cache()
        index = torch.tensor([r for _, r in pairs], device=self.device)
        embeds, mask = self._left_pad([torch.cat([soft[c], self._embed(self.tail_ids[r])]) for c, r in pairs])
        return self._forward(embeds, mask, self._gather_cache(head_cache, index),
                             head_mask.index_select(0, index))[0][:, -1]

    def _score_uncached(self, soft: torch.Tensor, placement: str) -> RowScores:
        def chunks():
            pairs = self._pairs(soft.shape[0])
            longest = max(len(h) + len(t) for h, t in zip(self.head_ids, self.tail_ids)) + soft.shape[1]
            for batch in self._batches(pairs, cached=0, new=longest):
                yield (batch, *self._option_scores(self._uncached_logits(soft, batch, placement)))
        return self._collect(soft.shape[0], chunks())

    def _score_prefix_cached(self, soft: torch.Tensor) -> RowScores:
        prefix_cache, prefix_mask, rest = self._prefix_cache(soft)

        def chunks():
            pairs = self.ordered_for_stems(self._pairs(soft.shape[0]))
            for batch in self._batches(pairs, cached=prefix_mask.shape[1], new=max(x.shape[0] for x in rest)):
                index = torch.tensor([c for c, _ in batch], device=self.device)
                logits = self._after_prefix_logits(prefix_cache, prefix_mask, index, [rest[r] for _, r in batch],
                                                   [r for _, r in batch])
                yield (batch, *self._option_scores(logits))
        return self._collect(soft.shape[0], chunks())

    @torch.no_grad()
    def _suffix_head_cache(self):
        """Key-value cache of every row's head (built once; it does not depend on the soft prompt), in batches
        that respect the memory limit."""
        if self._head_cache is None:
            heads = [self._embed(h) for h in self.head_ids]
            embeds, mask = self._left_pad(heads)
            layers = None
            size = self.batch_for(0, embeds.shape[1], at_least_one=True)  # built once: never refused
            for start in range(0, len(heads), size):
                _, part = self._forward(embeds[start:start + size], mask[start:start + size])
                chunk = [(layer.keys, layer.values) for layer in part.layers]
                layers = chunk if layers is None else [(torch.cat([k0, k]), torch.cat([v0, v]))
                                                        for (k0, v0), (k, v) in zip(layers, chunk)]
            self._head_cache = (_StaticLayers(layers), mask)
        return self._head_cache

    def _score_suffix_cached(self, soft: torch.Tensor) -> RowScores:
        _, head_mask = self._suffix_head_cache()

        def chunks():
            pairs = self._pairs(soft.shape[0])
            new = soft.shape[1] + max(len(t) for t in self.tail_ids)
            for batch in self._batches(pairs, cached=head_mask.shape[1], new=new):
                yield (batch, *self._option_scores(self._suffix_logits(soft, batch)))
        return self._collect(soft.shape[0], chunks())

    # ---- sequence log-likelihood (options that are not single tokens) ----------------------------------------
    def _score_sequences(self, soft: torch.Tensor, placement: str) -> RowScores:
        keep = max(len(c) for c in self.continuations) + 1
        units = [(c, r, k) for c, r in self._pairs(soft.shape[0]) for k in range(len(self.labels))]
        loglik = torch.zeros(soft.shape[0], self.n_rows, len(self.labels))
        longest = max(len(h) + len(t) for h, t in zip(self.head_ids, self.tail_ids)) + soft.shape[1] + keep
        for batch in self._batches(units, cached=0, new=longest, keep=keep):
            seqs = [torch.cat([self.sequence_embeds(soft[c], r, placement), self._embed(self.continuations[k])])
                    for c, r, k in batch]
            embeds, mask = self._left_pad(seqs)
            logprobs = torch.log_softmax(self._forward(embeds, mask, keep=keep)[0], dim=-1)
            for i, (c, r, k) in enumerate(batch):
                cont = self.continuations[k]
                first = keep - 1 - len(cont)
                loglik[c, r, k] = sum(logprobs[i, first + j, tok] for j, tok in enumerate(cont))
        probs = torch.softmax(loglik, dim=-1).numpy()
        return RowScores(probs, np.full(probs.shape[:2], np.nan))


class _StaticLayers:
    """Cached keys and values per layer, shaped like a ``DynamicCache``'s ``layers`` for :meth:`_gather_cache`."""

    def __init__(self, layers):
        self.layers = [_Layer(k, v) for k, v in layers]


@dataclass
class _Layer:
    keys: torch.Tensor
    values: torch.Tensor


@contextmanager
def activation_checkpointing(model, enabled: bool = True):
    """Recompute each decoder layer's activations in the backward pass (Hugging Face's checkpointing), while the
    model stays in eval mode: only the layers' own ``training`` flag is set, so dropout inside stays off."""
    if not enabled:
        yield
        return
    from transformers.modeling_layers import GradientCheckpointingLayer

    if not getattr(model, "supports_gradient_checkpointing", False):
        raise CultureAlignError(f"{type(model).__name__} does not support activation checkpointing: "
                                "leave out --checkpointing")
    checkpointing_enable(model, {"use_reentrant": False})
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer.training = True
    try:
        yield
    finally:
        for layer in layers:
            layer.training = False
        checkpointing_disable(model)
        model.eval()


def _at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    return logits if logits.dtype == torch.float64 else logits.float()



#: stems whose lengths lie within this many tokens of a bucket's shortest run in one forward pass (fewer pad tokens
#: than one pass over all, for a few more passes; benchmarks/speed.py)
STEM_BUCKET_WIDTH = 4


def _length_buckets(lengths: Sequence[int], width: int, skip_empty: bool = False) -> list[list[int]]:
    """Indices of ``lengths`` in buckets of ascending length, each within ``width`` of its shortest (without the
    zero lengths with ``skip_empty``)."""
    buckets: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if skip_empty and lengths[i] == 0:
            continue
        if buckets and lengths[i] - lengths[buckets[-1][0]] <= width:
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


def _common_prefix(seqs: Sequence[Sequence[int]]) -> list[int]:
    first = list(seqs[0])
    n = len(first)
    for s in seqs[1:]:
        n = min(n, len(s))
        for i in range(n):
            if s[i] != first[i]:
                n = i
                break
    # keep at least one token per row outside the shared part, so every row has a last position to read
    return first[: max(0, min(n, min(len(s) for s in seqs) - 1))]


class EmbeddingLookup:
    """Input embeddings through a model's embedding module, so that a model that scales its embeddings inside it
    (Gemma multiplies by sqrt(hidden)) gets soft prompts at the scale it sees."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def embed(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``(seq,)`` ids -> ``(seq, hidden)`` float32 on the CPU, detached."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        with torch.no_grad():
            return self.module(ids.to(self.module.weight.device)).detach().float().cpu()

    def embedding_matrix(self, sample: int = 4096) -> torch.Tensor:
        """``(vocab, hidden)``: the weight matrix times the factor by which the module scales its rows (measured on
        the first ``sample`` rows); the weight itself, uncopied, when that factor is 1."""
        weight = self.module.weight.detach()
        ids = torch.arange(min(sample, weight.shape[0]))
        ratio = float(self.embed(ids).std() / weight[ids.to(weight.device)].float().std())
        return weight if ratio == 1.0 else weight.float() * ratio


class HFBackend(Backend):
    """A Hugging Face causal LM (``transformers``), frozen, in eval mode: the ``hf`` backend, with gradients.

    ``model``: ``"default"``, a hub id or a folder (loaded with :func:`culturealign.models.load_model`), or an
    already loaded :class:`~culturealign.models.LoadedModel`. Backend options (``--backend-args``):
    ``revision``, ``attn_implementation``, ``trust_remote_code``, passed to ``from_pretrained``.

        >>> from culturealign.models import LoadedModel
    >>> tok = make_tokenizer(); backend = HFBackend(LoadedModel(make_model(tok), tok, "tiny", "tiny"))
    >>> backend.hidden_size, tuple(backend.embed([1, 2, 3]).shape), tuple(backend.embedding_matrix().shape)
    (32, (3, 32), (400, 32))
    """

    name = "hf"
    supports_gradients = True

    def __init__(self, model: "str | LoadedModel" = "default", device: str | None = "cpu",
                 dtype: str | None = "float32", revision: str | None = None, attn_implementation: str | None = None,
                 trust_remote_code: bool = False):
        from ..models import load_model

        if isinstance(model, str):
            options = {k: v for k, v in {"revision": revision, "attn_implementation": attn_implementation,
                                         "trust_remote_code": trust_remote_code or None}.items() if v is not None}
            model = load_model(model, device, dtype, **options)
        self.loaded = model
        self.model, self.tokenizer, self.model_id = model.model, model.tokenizer, model.model_id
        self.path = model.resolved_path
        self._lookup = EmbeddingLookup(self.model.get_input_embeddings())
        self.hidden_size = int(self._lookup.module.weight.shape[1])

    @property
    def device(self) -> torch.device:
        return self._lookup.module.weight.device

    def embed(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        return self._lookup.embed(ids)

    def embedding_matrix(self) -> torch.Tensor:
        return self._lookup.embedding_matrix()

    def scorer(self, rows: Sequence[SurveyRow], labels: Sequence[str], batch_size: int | None = None,
               max_memory_mb: float | None = None, **options) -> "SurveyScorer":
        return SurveyScorer(self.model, self.tokenizer, rows, labels, 24 if batch_size is None else batch_size,
                            max_memory_mb=max_memory_mb, **options)

    @torch.no_grad()
    def generate(self, system: str | None, text: str, soft: "SoftPrompt | None" = None, max_new_tokens: int = 128,
                 temperature: float = 0.0, seed: int = 0) -> str:
        head, tail = render_chat(self.tokenizer, system, text)
        module = self._lookup.module
        ids = lambda s: torch.tensor(self.tokenizer(s, add_special_tokens=False)["input_ids"],  # noqa: E731
                                     device=self.device)
        embeds = place_soft_prompt(module(ids(head)), module(ids(tail)), soft.embeddings if soft else None,
                                   soft.placement if soft else "prefix").unsqueeze(0)
        torch.manual_seed(seed)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {"do_sample": False}
        out = self.model.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long,
                                  device=self.device), max_new_tokens=max_new_tokens,
                                  pad_token_id=self.tokenizer.pad_token_id, **sampling)
        return self.tokenizer.decode(out[0], skip_special_tokens=True).strip()

    def provenance(self) -> dict:
        weight = self._lookup.module.weight
        return {"backend": self.name, "id": self.model_id, "path": self.path, "hidden_size": self.hidden_size,
                "dtype": str(weight.dtype).replace("torch.", ""), "device": str(weight.device)}

    def fingerprint(self) -> dict:
        from ..models import weights_fingerprint

        # the device and dtype of the model's parameters (the embedding may sit elsewhere when sharded)
        param = next(self.model.parameters())
        return {"model": self.path, "dtype": str(param.dtype).replace("torch.", ""), "device": str(param.device),
                "weights": weights_fingerprint(self.model)}
