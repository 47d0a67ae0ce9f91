"""Stochastic gradient steps (``--rows-per-step``): whole (wording, order) blocks drawn without replacement, an
unbiased estimate of the per-order objective and of its gradient, resumable, refused where they cannot cover every
dimension."""
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from culturealign.align import BlockSampler, make_alignment
from culturealign.cli import app
from culturealign.config import AlignConfig, MeasureConfig, SoftPromptConfig
from culturealign.errors import ConfigError
from culturealign.models import LoadedModel
from culturealign.session import Session

runner = CliRunner()


def _session(tiny_model, tiny_tokenizer):
    return Session(MeasureConfig(model="tiny", constants="zero", order="both"),
                   lm=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))


def _adam(session, **kw):
    return AlignConfig(country="CN", optimizer="adam", steps=kw.pop("steps", 4), lr=0.05, validate=None,
                       soft=SoftPromptConfig(n_tokens=2), measure=session.config, **kw)


@pytest.mark.parametrize("n_wordings,rows", [(1, 24), (3, 24), (3, 48), (3, 72)])
def test_each_epoch_runs_every_block_once(n_wordings, rows):
    sampler = BlockSampler(n_wordings, 2, 24, rows, seed=5)
    k, n_blocks = rows // 24, n_wordings * 2
    every = {(w, o) for w in range(n_wordings) for o in range(2)}
    for epoch in range(3):
        steps = [sampler.blocks(epoch * sampler.per_epoch + j) for j in range(sampler.per_epoch)]
        assert all(len(s) == len(set(s)) == k for s in steps)
        assert sorted(b for s in steps for b in s) == sorted(every)       # each block once per epoch
        if k % 2 == 0:                                                     # both orders, equally, in every step
            assert all([o for _, o in s].count(0) == k // 2 for s in steps)
    assert sampler.per_epoch == n_blocks // k
    again = BlockSampler(n_wordings, 2, 24, rows, seed=5)
    assert [again.blocks(t) for t in range(9)] == [sampler.blocks(t) for t in range(9)]   # (seed, step) decides


def test_every_block_is_equally_likely_in_any_step():
    counts = np.zeros((3, 2))
    for seed in range(600):
        for w, o in BlockSampler(3, 2, 24, 24, seed=seed).blocks(4):   # step 4: inside the first epoch
            counts[w, o] += 1
    assert np.allclose(counts / 600, 1 / 6, atol=0.05)


@pytest.mark.parametrize("rows", [10, 30, 72, 0])
def test_rows_that_cannot_cover_every_dimension_are_refused(tmp_path, tiny_model, tiny_tokenizer, rows):
    session = _session(tiny_model, tiny_tokenizer)
    with pytest.raises(ConfigError, match="rows-per-step|rows_per_step"):
        make_alignment(_adam(session, rows_per_step=rows), tmp_path / "x", session=session)
    assert not (tmp_path / "x").exists()


def test_rows_per_step_needs_per_order_and_adam(tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer)
    with pytest.raises(ConfigError, match="needs the per-order objective"):
        _adam(session, rows_per_step=24, objective="pooled")
    cma = AlignConfig(country="CN", optimizer="cma", rows_per_step=24, measure=session.config)
    assert cma.unused_settings() == ["AlignConfig.rows_per_step"]


def test_the_epochs_mean_step_is_the_full_step(tmp_path, tiny_model, tiny_tokenizer, monkeypatch):
    """At one prompt, the mean over an epoch of the sampled steps' losses and gradients is the full step's: the
    estimate is unbiased (here with two wordings, four blocks, one a step). The stems an item's orders share are
    off, so that both run the same arithmetic (their agreement is tests/test_architectures.py's)."""
    from culturealign.backends.hf import SurveyScorer

    monkeypatch.setattr(SurveyScorer, "stem_lengths", property(lambda self: [0] * self.n_rows))
    session = _session(tiny_model, tiny_tokenizer)
    wordings = ["vsm2013-reworded"]
    full = make_alignment(_adam(session, wordings=wordings, loss="l1", max_grad_norm=None), tmp_path / "full", session=session)
    start = full.prompt.detach().clone()
    row = full.step()
    full_grad = full.prompt.grad.clone()
    sampled = make_alignment(_adam(session, wordings=wordings, loss="l1", max_grad_norm=None, rows_per_step=24), tmp_path / "s",
                             session=session)
    assert sampled.sampler.per_epoch == 4
    losses, grads, seen = [], [], set()
    for step in range(4):
        with torch.no_grad():
            sampled.prompt.copy_(start)                  # every step at the same prompt
        sampled.state.generation = step
        r = sampled.step()
        assert r["rows"] == 24 and r["forward_equivalents"] == pytest.approx(full.grad.step_cost / 2 * (step + 1))
        losses.append(r["loss"])
        grads.append(sampled.prompt.grad.clone())
        seen |= set(sampled.sampler.blocks(step))
    assert len(seen) == 4 and len(set(np.round(losses, 6))) > 1        # the blocks differ
    assert np.mean(losses) == pytest.approx(row["loss"], rel=1e-7)   # batches padded differently: float noise
    torch.testing.assert_close(torch.stack(grads).mean(0), full_grad, rtol=1e-3, atol=1e-5)   # float32 noise
    assert (torch.stack(grads[:3]).mean(0) - full_grad).abs().max() > 1e-2        # an epoch cut short is not


def test_the_command_line_names_the_flag(tmp_path, tiny_model_dir):
    res = runner.invoke(app, ["align", "--country", "CN", "--out", str(tmp_path / "cli"), "--model", tiny_model_dir,
                              "--constants", "zero", "--rows-per-step", "30"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert "--rows-per-step 30 cannot cover every dimension evenly" in res.output and "use one of 24, 48" in res.output
    assert not (tmp_path / "cli").exists()
