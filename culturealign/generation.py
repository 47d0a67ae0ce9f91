"""Talking to a (soft-prompted) model: chat generation with the soft prompt placed as in alignment."""
from __future__ import annotations

import torch

from .models import LoadedModel
from .prompts import render_chat
from .scoring import place_soft_prompt
from .softprompt import SoftPrompt


@torch.no_grad()
def generate(lm: LoadedModel, text: str, soft_prompt: SoftPrompt | None = None, system: str | None = None,
             max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0) -> str:
    """The model's reply to ``text``; ``temperature`` 0 decodes greedily."""
    head, tail = render_chat(lm.tokenizer, system, text)
    embed = lm.model.get_input_embeddings()
    ids = lambda s: torch.tensor(lm.tokenizer(s, add_special_tokens=False)["input_ids"], device=lm.device)  # noqa: E731
    soft, placement = (soft_prompt.embeddings, soft_prompt.placement) if soft_prompt else (None, "prefix")
    embeds = place_soft_prompt(embed(ids(head)), embed(ids(tail)), soft, placement).unsqueeze(0)
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {"do_sample": False}
    out = lm.model.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long,
                            device=lm.device), max_new_tokens=max_new_tokens,
                            pad_token_id=lm.tokenizer.pad_token_id, **sampling)
    return lm.tokenizer.decode(out[0], skip_special_tokens=True).strip()
