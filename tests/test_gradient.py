"""Gradient alignment on tiny models: exact gradients, accumulation, checkpointing, resume after SIGKILL, reach."""
import json
import os
import signal

import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from culturealign.config import AlignConfig
from culturealign.align import CHECKPOINT, align, make_alignment
from culturealign.cli import app
from culturealign.errors import CultureAlignError
from culturealign.gradient import SurveyGradient, alignment_loss, reach
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.models import LoadedModel
from culturealign.config import SoftPromptConfig
from culturealign.softprompt import SoftPrompt
from culturealign.targets import lookup
from toymodels import make_model

from test_align import _cli, _history_without_time, _wait_for_rows


def _session(model, tokenizer, **measure):
    cfg = MeasureConfig(model="tiny", constants="zero", order=measure.pop("order", "both"), **measure)
    return Session(cfg, lm=LoadedModel(model, tokenizer, "tiny", "tiny"))


@pytest.fixture(scope="module")
def double_model(tiny_tokenizer):
    return make_model(tiny_tokenizer).double()


def test_differentiable_indices_equal_the_measurement_pipeline(tiny_model, tiny_tokenizer):
    """The torch chain (reverse rows mapped back, orders averaged, affine index formulas) gives the numbers the
    numpy measurement gives, for arbitrary listed-order distributions."""
    session = _session(tiny_model, tiny_tokenizer)
    survey = session.survey("naive", None)
    objective = session.objective(lookup("CN"))
    grad = SurveyGradient(survey, np.array([10.0, -5, 3, 0, 7, 1]), "prefix")
    objective.constants = np.array([10.0, -5, 3, 0, 7, 1])
    listed = np.random.default_rng(0).dirichlet(np.ones(5), size=(2, survey.scorer.n_rows))
    answers = survey._by_order(listed, np.full(listed.shape[:2], np.nan))
    np.testing.assert_allclose(grad.indices(torch.as_tensor(listed)).numpy().mean(1), objective.indices(answers.expected),
                               atol=1e-9)


@pytest.mark.parametrize("placement", ["prefix", "suffix"])
def test_cached_gradient_equals_plain_autograd(placement, double_model, tiny_tokenizer):
    """The cached paths (prefix: the prompt's cache shared by the rows; suffix: the rows' head cache reused) give
    the gradient of plain full sequences, and it agrees with finite differences."""
    session = _session(double_model, tiny_tokenizer)
    survey = session.survey("naive", None)
    gen = torch.Generator().manual_seed(0)
    start = 0.05 * torch.randn(1, 3, 32, generator=gen, dtype=torch.float64)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5, -1.0], dtype=torch.float64)
    grads = []
    for use_cache in (True, False):
        survey.scorer.use_cache = use_cache
        soft = start.clone().requires_grad_(True)
        SurveyGradient(survey, np.zeros(6), placement).backward(soft, lambda idx: (idx @ weights).mean(1))
        grads.append(soft.grad)
    survey.scorer.use_cache = True
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=5e-6)  # float32 norms inside
    grad = SurveyGradient(survey, np.zeros(6), placement)
    direction = torch.randn(start.shape, generator=gen, dtype=torch.float64)

    def f(x):
        return float(grad.indices(torch.as_tensor(survey.scorer.score(x, placement).probs))[0].mean(0) @ weights)

    eps = 1e-3  # the norm layers compute in float32, so a tiny step drowns in rounding; this one sees curvature
    numeric = (f(start + eps * direction) - f(start - eps * direction)) / (2 * eps)
    assert float((grads[0] * direction).sum()) == pytest.approx(numeric, rel=0.25)


def test_micro_batches_and_checkpointing_give_the_same_gradient(double_model, tiny_tokenizer):
    """Under a memory limit the gradient is accumulated over micro-batches (two passes); with activation
    checkpointing it is recomputed: both must give the gradient of one big batch."""
    grads = {}
    for name, memory, checkpointing in (("one batch", None, False), ("micro", 20.0, False), ("ckpt", None, True),
                                        ("micro+ckpt", 20.0, True)):
        session = _session(double_model, tiny_tokenizer, max_memory_mb=memory)
        survey = session.survey("naive", None)
        grad = SurveyGradient(survey, np.zeros(6), "prefix", checkpointing=checkpointing)
        if memory:
            assert survey.scorer.grad_batch(3, "prefix", checkpointing) < survey.scorer.n_rows
        soft = torch.full((1, 3, 32), 0.02, dtype=torch.float64).requires_grad_(True)
        loss = alignment_loss(lookup("CN").vector(), ["PDI", "IDV", "MAS", "UAI", "LTO", "IVR"])
        grad.backward(soft, loss)
        grads[name] = soft.grad.clone()
    assert grads["one batch"].abs().sum() > 0
    for name in ("micro", "ckpt", "micro+ckpt"):
        torch.testing.assert_close(grads[name], grads["one batch"], rtol=1e-3, atol=5e-6)  # float32 norms inside
    assert not double_model.training  # checkpointing left the model as it found it


def test_adam_alignment_lowers_the_loss_and_writes_the_run(tmp_path, tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer, order="forward")
    cfg = AlignConfig(country="CN", optimizer="adam", steps=6, lr=0.05, soft=SoftPromptConfig(n_tokens=3),
                      measure=session.config)
    record = align(cfg, tmp_path / "run", session=session)
    assert record["optimizer_kind"] == "gradient" and record["evaluations"] == 6 and record["status"] == "finished"
    history = list(__import__("csv").DictReader((tmp_path / "run" / "history.csv").open()))
    losses = [float(r["loss"]) for r in history]
    assert len(losses) == 6 and min(losses[1:]) < losses[0]  # it went downhill from its start
    assert float(history[-1]["forward_equivalents"]) == pytest.approx(18.0)
    assert {"lr", "grad_norm", "best_PDI"} <= set(history[0])
    # the saved prompt reproduces the best loss when measured again, and is a PEFT adapter (prefix)
    prompt = SoftPrompt.load(tmp_path / "run")
    rec = session.measure(lookup("CN"), "naive", prompt)
    assert rec["loss"] == pytest.approx(record["best"]["loss"], abs=1e-4)
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    # the checkpoint is safetensors: the state as JSON in the header, the prompt and Adam's moments as tensors
    with safe_open(str(tmp_path / "run" / CHECKPOINT), "pt") as f:
        assert set(f.keys()) == {"prompt", "best", "adam.step", "adam.exp_avg", "adam.exp_avg_sq"}
        assert json.loads(f.metadata()["state"])["generation"] == 6


@pytest.mark.parametrize("max_grad_norm", [0.5, None])
def test_a_gradient_spike_is_clipped_before_it_reaches_adams_moments(max_grad_norm, tiny_model, tiny_tokenizer,
                                                                    tmp_path):
    """A spike in the gradient (India on the default model jumped from norm 18 to 11943) is clipped to
    ``max_grad_norm`` before Adam's step, so Adam's second moment holds at most (1 - beta2) * max_grad_norm**2."""
    session = _session(tiny_model, tiny_tokenizer, order="forward")
    cfg = AlignConfig(country="CN", optimizer="adam", steps=2, soft=SoftPromptConfig(n_tokens=2),
                      max_grad_norm=max_grad_norm, measure=session.config)
    run = make_alignment(cfg, tmp_path / "run", session=session)
    backward = run.grad.backward

    def spiking(prompt, loss_fn, orders=None):
        out = backward(prompt, loss_fn, orders)
        prompt.grad.mul_(1e4 / prompt.grad.norm())   # a gradient of norm 10^4
        return out

    run.grad.backward = spiking
    row = run.step()
    assert row["grad_norm"] == pytest.approx(1e4, rel=1e-4)       # the history records the norm before clipping
    second_moment = float(run.adam.state[run.prompt]["exp_avg_sq"].sum())
    beta2 = run.adam.param_groups[0]["betas"][1]
    expected = (1 - beta2) * (max_grad_norm if max_grad_norm else 1e4) ** 2
    assert second_moment == pytest.approx(expected, rel=1e-3)


def test_resume_in_process_is_bit_identical(tmp_path, tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer, order="forward")
    cfg = AlignConfig(country="IN", optimizer="adam", steps=6, lr=0.05, schedule="cosine", loss="huber",
                      soft=SoftPromptConfig(n_tokens=2, placement="suffix"), measure=session.config)
    full = align(cfg, tmp_path / "full", session=session)
    half = AlignConfig.from_dict({**cfg.to_dict(), "steps": 6})
    run = make_alignment(half, tmp_path / "half", session=session)
    for _ in range(3):
        run.step()
    run.checkpoint()
    resumed = align(None, tmp_path / "half", resume=True, session=session)
    assert resumed["best"]["loss"] == full["best"]["loss"]
    assert torch.equal(SoftPrompt.load(tmp_path / "half").embeddings, SoftPrompt.load(tmp_path / "full").embeddings)


@pytest.mark.parametrize("sampled", [[], ["--rows-per-step", "24"]], ids=["every-row", "sampled-rows"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, tiny_model_dir, sampled):
    """Also with stochastic steps: the blocks a step runs follow from (seed, step), so the resumed run draws the
    ones the uninterrupted run drew."""
    env = {**os.environ, "CULTUREALIGN_CACHE": str(tmp_path / "cache")}
    common = ["align", "--country", "US", "--model", tiny_model_dir, "--constants", "zero", "--order", "both",
              "--optimizer", "adam", "--steps", "16", "--lr", "0.05", "--n-tokens", "2", "--seed", "3",
              "--validate-every", "3", "--json", *sampled]
    full = _cli(*common, "--out", tmp_path / "full", env=env)
    out_full, err = full.communicate(timeout=600)
    assert full.returncode == 0, err
    killed = _cli(*common, "--out", tmp_path / "killed", env=env)
    _wait_for_rows(tmp_path / "killed" / "history.csv", 3)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert json.loads((tmp_path / "killed" / "run.json").read_text())["status"] == "running"  # it died mid-way
    resumed = _cli("align", "--out", tmp_path / "killed", "--resume", "--json", env=env)
    out_resumed, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    a, b = json.loads(out_full), json.loads(out_resumed)
    # the default patience ends both at the same step (its stale count is in the checkpoint)
    assert a["evaluations"] == b["evaluations"] and a["stopped"] == b["stopped"] and a["best"]["loss"] == b["best"]["loss"]
    assert a["stopped"] in ("budget", "patience") and (a["evaluations"] == 16) == (a["stopped"] == "budget")
    # validation was on (the shipped wording, both orders) and picked the same prompt after the resume
    assert a["wordings"]["validation"]["questionnaire"] == "instrument:vsm2013-validation"
    assert b["wordings"]["validation"]["best_loss"] == a["wordings"]["validation"]["best_loss"]
    assert b["best"]["generation"] == a["best"]["generation"]
    assert torch.equal(SoftPrompt.load(tmp_path / "full").embeddings, SoftPrompt.load(tmp_path / "killed").embeddings)
    assert _history_without_time(tmp_path / "full") == _history_without_time(tmp_path / "killed")
    rows = (tmp_path / "full" / "history.csv").read_text().splitlines()
    assert rows[1].split(",")[rows[0].split(",").index("rows")] == ("24" if sampled else "48")


def test_bf16_model_trains_an_fp32_master_prompt(tmp_path, tiny_tokenizer):
    model = make_model(tiny_tokenizer).to(torch.bfloat16)
    session = _session(model, tiny_tokenizer, order="forward")
    cfg = AlignConfig(country="CN", optimizer="adam", steps=2, lr=0.05, soft=SoftPromptConfig(n_tokens=2),
                      measure=session.config)
    run = make_alignment(cfg, tmp_path / "bf16", session=session)
    before = run.prompt.detach().clone()
    run.step()
    assert run.prompt.dtype == torch.float32 and run.prompt.grad.dtype == torch.float32
    assert torch.isfinite(run.prompt.grad).all() and not torch.equal(run.prompt.detach(), before)


def test_gradient_errors_are_clear(tmp_path, tiny_model, tiny_tokenizer, tiny_model_dir):
    session = _session(tiny_model, tiny_tokenizer, order="forward", answer_mode="sample")
    cfg = AlignConfig(country="CN", optimizer="adam", steps=2, measure=session.config)
    with pytest.raises(CultureAlignError, match="black-box optimiser"):
        make_alignment(cfg, tmp_path / "x", session=session)
    with pytest.raises(CultureAlignError, match="unknown optimizer"):
        AlignConfig(country="CN", optimizer="sgd")
    # a corrupt checkpoint is one clear line, not a traceback
    runner = CliRunner()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / CHECKPOINT).write_bytes(b"not a checkpoint")
    res = runner.invoke(app, ["align", "--out", str(tmp_path / "bad"), "--resume"])
    assert isinstance(res.exception, SystemExit) and res.exit_code == 2
    assert "corrupt" in res.output and "--resume" in res.output


def test_reach_pushes_each_index_both_ways(tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer, order="forward")
    result = reach(session, lookup("CN"), soft=SoftPromptConfig(n_tokens=3), steps=4, lr=0.1,
                   dimensions=["PDI", "LTO"])
    assert set(result["dimensions"]) == {"PDI", "LTO"} and result["gradient_steps"] == 16
    for dim, r in result["dimensions"].items():
        down, up = r["trajectory"]["down"], r["trajectory"]["up"]
        assert down[0] == up[0] == r["start"] and len(down) == 5
        assert down[-1] < r["start"] < up[-1]   # the pushes went the way they were sent
        assert r["lowest"] <= down[-1] and r["highest"] >= up[-1]
        assert r["reachable"] == (r["lowest"] <= lookup("CN").scores[dim] <= r["highest"])


def test_reach_command(tmp_path, tiny_model_dir):
    res = CliRunner().invoke(app, ["reach", "--model", str(tiny_model_dir), "--constants", "zero", "--order",
                                   "forward", "--steps", "2", "--dimensions", "ivr", "--json",
                                   "--out", str(tmp_path / "r")])
    assert res.exception is None, res.output
    out = json.loads(res.stdout)
    assert list(out["dimensions"]) == ["IVR"] and out["dimensions"]["IVR"]["target"] is None
    assert json.loads((tmp_path / "r" / "reach.json").read_text())["dimensions"]["IVR"]["start"] == \
        out["dimensions"]["IVR"]["start"]


def test_sample_mode_refuses_a_batch_of_prompts(tiny_model, tiny_tokenizer):
    survey = _session(tiny_model, tiny_tokenizer, order="forward").survey("naive", None)
    with pytest.raises(CultureAlignError, match="one soft prompt at a time"):
        survey.sample(2, soft_prompt=torch.zeros(3, 2, 32))
    assert survey.sample(1, soft_prompt=torch.zeros(1, 2, 32), max_new_tokens=2).probs.shape == (1, 24, 5)
