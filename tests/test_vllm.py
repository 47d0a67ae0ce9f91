"""The vLLM backend agrees with the Hugging Face path on the default model.

Runs where vLLM is installed (``bash scripts/test-vllm.sh``: the ``.venv-vllm`` environment on CPU); elsewhere the
agreement tests skip, unless ``CULTUREALIGN_REQUIRE_VLLM=1`` makes a missing vLLM a failure (CI sets it, so the
test cannot pass by skipping).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from culturealign.errors import CultureAlignError

TOL = 1e-4            # max abs difference in label probabilities (the bar)
N_CANDIDATES = 3      # a small population of random soft prompts (prefix placement recomputes every row per candidate)
N_TOKENS = 5


def _require_vllm() -> None:
    """Skip without vLLM, or fail when the environment says it must be there."""
    if importlib.util.find_spec("vllm") is None:
        message = "vLLM is not installed (bash scripts/setup-vllm.sh creates .venv-vllm with it)"
        if os.environ.get("CULTUREALIGN_REQUIRE_VLLM") == "1":
            pytest.fail(f"CULTUREALIGN_REQUIRE_VLLM=1 but {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def setup():
    """One engine and one Hugging Face model for every case (starting vLLM takes most of the time)."""
    _require_vllm()
    from culturealign.backends import load_backend
    from culturealign.instrument import Questionnaire
    from culturealign.models import load_model
    from culturealign.config import PromptConfig
    from culturealign.prompts import LABELS, build_rows
    from culturealign.backends.hf import SurveyScorer

    lm = load_model("default")
    rows = build_rows(Questionnaire.builtin(), lm.tokenizer, PromptConfig(labels="letters"))
    labels = LABELS["letters"]
    hf = SurveyScorer(lm.model, lm.tokenizer, rows, labels)
    backend = load_backend("vllm", "default")
    scorer = backend.scorer(rows, labels)
    # random prompts at the scale of real input embeddings
    weight = lm.model.get_input_embeddings().weight
    gen = torch.Generator().manual_seed(0)
    soft = torch.randn(N_CANDIDATES, N_TOKENS, weight.shape[1], generator=gen) * float(weight.std())
    yield hf, scorer, backend, soft
    backend.close()


def test_rows_and_labels_match_hf(setup):
    hf, scorer, backend, _ = setup
    assert scorer.n_rows == hf.n_rows == 48
    assert scorer.option_ids == hf.option_ids
    assert scorer.head_ids == hf.head_ids and scorer.tail_ids == hf.tail_ids
    ids = hf.head_ids[0]
    assert torch.equal(backend.embed(ids), hf.embedding(torch.tensor(ids)))


@pytest.mark.parametrize("case", ["plain", "prefix", "suffix"])
def test_vllm_agrees_with_hf(setup, case):
    hf, scorer, _, soft = setup
    prompts, placement = (None, "prefix") if case == "plain" else (soft, case)
    want, got = hf.score(prompts, placement), scorer.score(prompts, placement)
    assert got.probs.shape == want.probs.shape == ((1 if prompts is None else N_CANDIDATES), 48, 5)
    diff = float(np.abs(got.probs - want.probs).max())
    print(f"{case}: max |p_vllm - p_hf| = {diff:.2e}, mass {float(np.abs(got.mass - want.mass).max()):.2e}")
    assert diff < TOL
    assert np.abs(got.mass - want.mass).max() < TOL


@pytest.mark.parametrize("placement", [None, "prefix", "suffix"])
def test_generate_matches_hf_greedy(setup, placement):
    """Greedy replies through vLLM equal the Hugging Face backend's, plain and with a soft prompt in either place
    (the same placement rule feeds both engines)."""
    from culturealign.backends import load_backend
    from culturealign.softprompt import SoftPrompt

    _, _, backend, soft = setup
    prompt = None if placement is None else SoftPrompt(soft[0] * 0.1, placement, {})  # small: a readable reply
    hf = load_backend("hf", "default")
    kwargs = dict(max_new_tokens=12, temperature=0.0)
    got = backend.generate("You are a helpful assistant.", "Name a colour.", soft=prompt, **kwargs)
    want = hf.generate("You are a helpful assistant.", "Name a colour.", soft=prompt, **kwargs)
    assert got and got == want


def test_provenance_names_the_engine(setup):
    _, _, backend, _ = setup
    info = backend.provenance()
    assert info["backend"] == "vllm" and info["vllm"] != "not installed"
    assert info["engine_args"]["enable_prompt_embeds"] is True and info["weights"]


def test_no_gradients():
    """Asking vLLM for gradients is a clear error (no engine needed)."""
    from culturealign.backends.vllm import VLLMBackend, VLLMScorer, gradients_unsupported

    assert VLLMBackend.supports_gradients is False
    error = gradients_unsupported()
    assert isinstance(error, CultureAlignError) and "--backend hf" in str(error)
    scorer = VLLMScorer.__new__(VLLMScorer)  # the method raises before touching any state
    with pytest.raises(CultureAlignError, match="no gradients"):
        scorer.differentiable_probs(torch.zeros(1, 1, 4), "prefix")
