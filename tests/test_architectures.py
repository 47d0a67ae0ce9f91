"""Any Hugging Face causal LM: tiny random models of five architectures, each with its own kind of chat template.

Scoring with soft prompts must agree between the cached and uncached paths for both placements, and one gradient
step must run and change the prompt. Gemma scales its input embeddings inside the model and its template has no
system role: both are caught here.
"""
import numpy as np
import pytest
import torch

from culturealign.gradient import SurveyGradient
from culturealign.instrument import Questionnaire
from culturealign.models import LoadedModel
from culturealign.backends import hf
from culturealign.backends.hf import EmbeddingLookup
from culturealign.config import PromptConfig
from culturealign.prompts import build_rows
from culturealign.backends.hf import SurveyScorer
from culturealign.config import SoftPromptConfig
from culturealign.softprompt import embedding_scale, initial_embeddings
from culturealign.targets import lookup
from toymodels import make_tokenizer

TEMPLATES = {
    "chatml": ("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}"
               "{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\n'}}{% endif %}"),
    "mistral": ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\n\n' }}"
                "{% elif m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% endif %}{% endfor %}"),
    # Gemma's template refuses a system message
    "gemma": ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
              "{{ raise_exception('System role not supported') }}{% endif %}"
              "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\n' + m['content'] + "
              "'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"),
    "phi3": ("{% for m in messages %}{{'<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n'}}{% endfor %}"
             "{% if add_generation_prompt %}{{'<|assistant|>\n'}}{% endif %}"),
}


def _model(arch: str, tokenizer):
    import transformers as tf

    torch.manual_seed(0)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    if arch == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common))
    elif arch == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**common))
    elif arch == "mistral":
        model = tf.MistralForCausalLM(tf.MistralConfig(**common, sliding_window=None))
    elif arch == "gemma2":
        model = tf.Gemma2ForCausalLM(tf.Gemma2Config(**common, head_dim=8, sliding_window=1024,
                                                     final_logit_softcapping=None, attn_logit_softcapping=None))
    elif arch == "phi3":
        model = tf.Phi3ForCausalLM(tf.Phi3Config(**common))
    else:
        raise ValueError(arch)
    model.eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20.0)  # sharper distributions than random init gives
    for p in model.parameters():
        p.requires_grad_(False)
    return model


ARCHS = [("llama", "chatml"), ("qwen2", "chatml"), ("mistral", "mistral"), ("gemma2", "gemma"), ("phi3", "phi3")]


@pytest.mark.parametrize("arch,template", ARCHS)
def test_scoring_and_a_gradient_step_on_each_architecture(arch, template, monkeypatch):
    tok = make_tokenizer()
    tok.chat_template = TEMPLATES[template]
    model = _model(arch, tok)
    q = Questionnaire.builtin()
    # persona: a system message, which Gemma's template refuses (it must go into the user turn instead)
    rows = build_rows(q, tok, PromptConfig("persona", labels="letters", order="both"), lookup("CN"))
    assert "You are a person from China" in rows[0].head
    rows = rows[:3] + rows[24:27]
    emb = model.get_input_embeddings()
    p0 = initial_embeddings(SoftPromptConfig(n_tokens=3), EmbeddingLookup(emb), tok, "China", seed=0)
    # soft prompts start at the scale the model sees: for Gemma the embedding rows times sqrt(hidden)
    ids = tok("You are a person from China.", add_special_tokens=False)["input_ids"][:3]
    with torch.no_grad():
        assert torch.allclose(p0, emb(torch.tensor(ids)).float())
    if arch == "gemma2":
        assert embedding_scale(EmbeddingLookup(emb)) == pytest.approx(float(emb.weight.std()) * 32 ** 0.5, rel=1e-3)
    soft = torch.stack([p0, p0 + 0.5 * torch.randn(p0.shape, generator=torch.Generator().manual_seed(1))])
    cached = SurveyScorer(model, tok, rows, ["A", "B", "C", "D", "E"])
    plain = SurveyScorer(model, tok, rows, ["A", "B", "C", "D", "E"], use_cache=False)
    assert cached.mode == "next_token"
    for placement in ("prefix", "suffix"):
        a = cached.score(soft, placement).probs
        b = plain.score(soft, placement).probs
        np.testing.assert_allclose(a, b, atol=2e-5)
        assert np.abs(a[0] - a[1]).max() > 1e-6  # the soft prompt matters
        # the differentiable path gives the same numbers
        np.testing.assert_allclose(cached.differentiable_probs(soft, placement).detach().numpy().reshape(a.shape),
                                   a, atol=2e-5)

    # prefix: the rows of one item share their stem's cache (one forward of it for both orders); the
    # probabilities and their gradients are the uncached path's
    assert cached.stem_lengths[0] == cached.stem_lengths[3] > 10 and cached.stem_lengths[0] < len(cached.head_ids[0])
    for path in (cached, plain):
        leaf = soft.clone().requires_grad_(True)
        probs = path.differentiable_probs(leaf, "prefix", cached.ordered_for_stems(
            [(c, r) for c in range(2) for r in range(6)]))
        (probs * torch.arange(5.0)).sum().backward()
        if path is cached:
            stem_probs, stem_grad = probs.detach(), leaf.grad.clone()
    torch.testing.assert_close(stem_probs, probs.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(stem_grad, leaf.grad, atol=1e-5, rtol=1e-4)
    assert leaf.grad.abs().max() > 1e-4
    # stems in buckets of one length each, and a row whose sibling is not in the batch (it runs whole): same numbers
    monkeypatch.setattr(hf, "STEM_BUCKET_WIDTH", 0)
    pairs = [(c, r) for c in range(2) for r in range(6) if (c, r) != (1, 4)]
    assert len({cached.stem_lengths[r] for r in range(6)}) > 1
    for path in (cached, plain):
        leaf = soft.clone().requires_grad_(True)
        probs = path.differentiable_probs(leaf, "prefix", pairs)
        (probs * torch.arange(5.0)).sum().backward()
        if path is cached:
            stem_probs, stem_grad = probs.detach(), leaf.grad.clone()
    torch.testing.assert_close(stem_probs, probs.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(stem_grad, leaf.grad, atol=1e-5, rtol=1e-4)

    grad = SurveyGradient(_full_survey(model, tok), np.zeros(6), "suffix")
    prompt = p0.clone().unsqueeze(0).requires_grad_(True)
    before = prompt.detach().clone()
    grad.backward(prompt, lambda idx: idx[:, :, 4].mean(1))
    assert prompt.grad is not None and torch.isfinite(prompt.grad).all() and prompt.grad.abs().sum() > 0
    torch.optim.Adam([prompt], lr=0.01).step()
    assert not torch.equal(prompt.detach(), before)


def _full_survey(model, tok):
    from culturealign.survey import Survey

    lm = LoadedModel(model, tok, "tiny", "tiny")
    return Survey(lm, Questionnaire.builtin(), PromptConfig("naive", labels="letters", order="both"))
