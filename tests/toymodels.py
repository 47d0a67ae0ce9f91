"""Small models built in memory: a BPE tokenizer with a ChatML template and tiny random Llamas.

Used by the unit tests (no files needed) and by the planted-culture benchmark, which trains one of these models to
answer the survey like a given country's respondents.
"""
from __future__ import annotations

import json
from typing import Iterable

import torch

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def make_tokenizer(extra_text: Iterable[str] = (), vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on the questionnaire text (digits and letters are single tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from culturealign.instrument import Questionnaire

    corpus = [json.dumps(Questionnaire.builtin().raw)] * 3 + list(extra_text) + [
        "You are a person from China. Answer with a single number from 1 to 5 or a letter from A to E."]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML
    return fast


def make_model(tokenizer, seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 4, head_scale: float = 20.0,
               mlp_ratio: int = 2):
    """A randomly initialised Llama sized for tests; ``head_scale`` sharpens its output distributions."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=mlp_ratio * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                         max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(head_scale)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
