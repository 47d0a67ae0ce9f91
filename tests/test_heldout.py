"""Held-out alignment on the tiny model: the per-order objective, training on several wordings, the validation
wording that picks the saved prompt, seeds that differ, reach per order."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from culturealign.config import AlignConfig
from culturealign.align import Alignment, align, make_alignment
from culturealign.cli import app
from culturealign.errors import CultureAlignError
from culturealign.gradient import alignment_loss, reach
from culturealign.instrument import Questionnaire
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.models import LoadedModel
from culturealign.objective import Objective
from culturealign.config import SoftPromptConfig
from culturealign.softprompt import SoftPrompt, initial_embeddings
from culturealign.targets import lookup

from test_instruments import TOY, _write

runner = CliRunner()


def _session(tiny_model, tiny_tokenizer, order="both"):
    return Session(MeasureConfig(model="tiny", constants="zero", order=order),
                   lm=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))


def _adam(session, **kw):
    return AlignConfig(country="CN", optimizer="adam", steps=kw.pop("steps", 4), lr=kw.pop("lr", 0.05),
                       soft=SoftPromptConfig(n_tokens=2, **kw.pop("soft", {})), measure=session.config, **kw)


def test_a_prompt_that_moves_the_orders_apart_meets_pooled_but_not_per_order():
    """Hand-made: one order says PDI 160, the other 0; their mean is China's 80. Pooled is met exactly, per-order is
    80 off in each order; numpy's objective and the torch loss gradients descend agree on both."""
    objective = Objective(Questionnaire.builtin(), np.zeros(6), lookup("China"), ["PDI"])
    expected = np.full((1, 2, 24), 3.0)
    expected[0, 0, 6] = 3 + 160 / 35                 # item 7 enters PDI with weight 35
    assert objective.survey_loss(expected, "pooled")[0] == pytest.approx(0.0, abs=1e-9)
    assert objective.survey_loss(expected, "per-order")[0] == pytest.approx(80.0)
    indices = torch.as_tensor(objective.indices(expected[0]))[None]          # (1, n_orders, 6)
    for kind, value in (("pooled", 0.0), ("per-order", 80.0)):
        loss = alignment_loss(objective.target_vector, ["PDI"], "l1", objective=kind)
        assert float(loss(indices)[0]) == pytest.approx(value, abs=1e-9)
    # two wordings: the mean of their losses; per-order is never below pooled (triangle inequality)
    two = np.stack([expected[0], np.full((2, 24), 3.0)])[None]            # (1, 2 wordings, 2 orders, 24)
    assert objective.survey_loss(two, "per-order")[0] == pytest.approx((80 + 80) / 2)
    assert objective.survey_loss(two, "pooled")[0] == pytest.approx((0 + 80) / 2)


def test_wordings_of_another_instrument_are_refused(tmp_path, tiny_model, tiny_tokenizer, tiny_model_dir):
    session = _session(tiny_model, tiny_tokenizer)
    toy = _write(tmp_path, TOY)
    with pytest.raises(CultureAlignError, match="is not a wording of builtin:vsm2013-en.*6 items"):
        make_alignment(_adam(session, wordings=[str(toy)]), tmp_path / "x", session=session)
    res = runner.invoke(app, ["align", "--country", "CN", "--out", str(tmp_path / "cli"), "--model", str(tiny_model_dir),
                              "--constants", "zero", "--questionnaire", "vsm2013", "--questionnaire", str(toy)])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert "is not a wording of" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "cli").exists()
    # the validation wording may not be one the prompt trains on
    with pytest.raises(CultureAlignError, match="is one of the training wordings"):
        make_alignment(_adam(session, wordings=["vsm2013-validation"]), tmp_path / "y", session=session)
    # another instrument has no shipped validation wording: auto turns validation off, a named one is an error
    toy_session = Session(MeasureConfig(model="tiny", constants="zero", questionnaire=str(toy)), backend=session.backend)
    config = AlignConfig(country="CN", optimizer="adam", steps=1, measure=toy_session.config)
    assert make_alignment(config, tmp_path / "z", session=toy_session).validation is None
    with pytest.raises(CultureAlignError, match="is not a wording of"):
        make_alignment(AlignConfig(country="CN", optimizer="adam", steps=1, validate="vsm2013-test",
                                   measure=toy_session.config), tmp_path / "w", session=toy_session)


def test_training_on_two_wordings_averages_their_losses(tmp_path, tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer)
    run = make_alignment(_adam(session, wordings=["vsm2013-reworded"], validate=None), tmp_path / "two",
                         session=session)
    p0 = run.prompt.detach().clone()
    row = run.step()
    country = lookup("CN")
    each = []
    for wording in (session, session.with_questionnaire("vsm2013-reworded")):
        expected = wording.survey("naive", country).answer(p0, "prefix").expected_by_order
        each.append(wording.objective(country).survey_loss(expected, "per-order")[0])
    assert abs(each[0] - each[1]) > 1e-4                      # the wordings do differ (a little, on a random model)
    assert row["loss"] == pytest.approx(np.mean(each), abs=1e-6)
    assert row["forward_equivalents"] == pytest.approx(2 * run.grad.step_cost)


def test_the_saved_prompt_is_the_validation_best_not_the_last(tmp_path, tiny_model, tiny_tokenizer, monkeypatch):
    session = _session(tiny_model, tiny_tokenizer)
    seen, losses = [], iter([5.0, 3.0, 4.0, 6.0, 7.0])

    def fake_validation(self, z):
        seen.append(z.clone())
        return next(losses)

    monkeypatch.setattr(Alignment, "validation_loss", fake_validation)
    record = align(_adam(session, steps=5, validate_every=1), tmp_path / "fake", session=session)
    assert len(seen) == 5 and record["best"]["generation"] == 2
    assert record["wordings"]["validation"]["best_loss"] == 3.0
    saved = SoftPrompt.load(tmp_path / "fake").embeddings
    assert torch.equal(saved, seen[1]) and not torch.equal(saved, seen[-1])
    monkeypatch.undo()
    # the real thing: the saved prompt scores the recorded validation loss on the validation wording
    record = align(_adam(session, steps=6, lr=0.2, validate_every=2), tmp_path / "real", session=session)
    history = (tmp_path / "real" / "history.csv").read_text().splitlines()
    rows = [dict(zip(history[0].split(","), line.split(","))) for line in history[1:]]
    validated = [int(r["generation"]) for r in rows if r["validation_loss"]]
    assert validated == [1, 3, 5, 6]                      # the first, every 2nd after it, and the last
    best = min(float(r["validation_loss"]) for r in rows if r["validation_loss"])
    assert record["wordings"]["validation"]["best_loss"] == pytest.approx(best)
    validation = session.with_questionnaire("vsm2013-validation")
    prompt = SoftPrompt.load(tmp_path / "real")
    expected = validation.survey("naive", lookup("CN")).answer(prompt.embeddings[None], "prefix").expected_by_order
    assert validation.objective(lookup("CN")).survey_loss(expected, "per-order")[0] == pytest.approx(best, rel=1e-5)


def test_patience_counts_validations_without_improvement(tmp_path, tiny_model, tiny_tokenizer, monkeypatch):
    session = _session(tiny_model, tiny_tokenizer)
    losses = iter([5.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0])
    monkeypatch.setattr(Alignment, "validation_loss", lambda self, z: next(losses))
    record = align(_adam(session, steps=7, validate_every=1, patience=2), tmp_path / "p", session=session)
    assert record["generations"] == 4 and record["best"]["generation"] == 2


def test_the_default_patience_stops_after_three_stale_validations_and_only_when_validating(
        tmp_path, tiny_model, tiny_tokenizer, monkeypatch):
    session = _session(tiny_model, tiny_tokenizer)
    monkeypatch.setattr(Alignment, "validation_loss", lambda self, z: [5.0, 3.0, 4.0, 6.0, 3.5, 8.0, 9.0, 1.0][
        self.state.generation - 1])
    assert AlignConfig(country="CN").patience == "auto" and AlignConfig(country="CN", patience="none").patience is None
    record = align(_adam(session, steps=8, validate_every=1), tmp_path / "auto", session=session)
    assert record["generations"] == 5 and record["best"]["generation"] == 2      # 4.0, 6.0, 3.5: three stale
    off = align(_adam(session, steps=8, validate_every=1, patience=None), tmp_path / "off", session=session)
    assert off["generations"] == 8 and off["best"]["generation"] == 8
    # without validation auto is off: a training loss that never improves (a step too small to move it) does not
    # stop the run, while an explicit patience of 3 steps does
    flat = {"steps": 8, "lr": 1e-12, "validate": None}
    assert align(_adam(session, **flat), tmp_path / "nv", session=session)["generations"] == 8
    assert align(_adam(session, patience=3, **flat), tmp_path / "nv3", session=session)["generations"] == 4
    # another instrument: validate auto validates nothing, so auto patience is off there too
    toy = _write(tmp_path, TOY)
    toy_session = Session(MeasureConfig(model="tiny", constants="zero", questionnaire=str(toy)), backend=session.backend)
    record = align(AlignConfig(country="CN", optimizer="adam", steps=8, lr=1e-12, soft=SoftPromptConfig(n_tokens=2),
                               measure=toy_session.config), tmp_path / "toy", session=toy_session)
    assert record["wordings"]["validation"] is None and record["patience"] is None and record["generations"] == 8


@pytest.mark.parametrize("value, done", [("none", 6), ("2", 4), ("auto", 5)])
def test_patience_on_the_command_line(tmp_path, tiny_model_dir, monkeypatch, value, done):
    monkeypatch.setattr(Alignment, "validation_loss", lambda self, z: [5.0, 3.0, 4.0, 6.0, 7.0, 8.0][
        self.state.generation - 1])
    result = CliRunner().invoke(app, ["align", "--model", str(tiny_model_dir), "--country", "CN", "--steps", "6",
                                      "--validate-every", "1", "--n-tokens", "2", "--patience", value,
                                      "--out", str(tmp_path / "run")])
    assert result.exception is None or result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["generations"] == done


def test_a_bad_patience_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["align", "--country", "CN", "--patience", "soon", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "--patience must be auto, none or a whole number, not 'soon'" in result.output
    assert not (tmp_path / "r").exists()


def test_seeds_are_different_starts_and_the_same_seed_the_same_run(tmp_path, tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer, order="forward")
    backend, soft = session.backend, SoftPromptConfig(n_tokens=3)
    text = initial_embeddings(soft, backend, backend.tokenizer, "China", 0)
    ids = backend.tokenizer("You are a person from China.", add_special_tokens=False)["input_ids"][:3]
    assert torch.equal(text, backend.embed(torch.tensor(ids)))          # seed 0: the text itself
    one, again, two = (initial_embeddings(soft, backend, backend.tokenizer, "China", s) for s in (1, 1, 2))
    assert torch.equal(one, again) and not torch.equal(one, two) and not torch.equal(one, text)
    noise = (one - text).std() / (backend.embedding_matrix().std())
    assert 0.3 < float(noise) < 0.7                                       # init_noise 0.5 embedding SDs
    assert torch.equal(initial_embeddings(SoftPromptConfig(n_tokens=3, init_noise=0.0), backend, backend.tokenizer,
                                          "China", 1), text)
    a, b, c = (align(_adam(session, seed=s, validate=None), tmp_path / f"s{i}", session=session)
               for i, s in enumerate((1, 1, 2)))
    assert a["best"]["loss"] == b["best"]["loss"] != c["best"]["loss"]
    assert torch.equal(SoftPrompt.load(tmp_path / "s0").embeddings, SoftPrompt.load(tmp_path / "s1").embeddings)


def test_measure_reports_each_orders_loss(tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer)
    session.resolve_constants()
    record = session.measure(lookup("CN"), "naive")
    assert set(record["loss_by_order"]) == {"forward", "reverse"}
    assert record["per_order_loss"] == pytest.approx(np.mean(list(record["loss_by_order"].values())))
    assert record["per_order_loss"] >= record["loss"] - 1e-9
    pdi = record["indices"]["PDI"]
    assert np.mean(list(pdi["by_order"].values())) == pytest.approx(pdi["model"])


def test_reach_reports_each_order(tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer)
    out = reach(session, lookup("CN"), steps=2, lr=0.1, dimensions=["PDI"], soft=SoftPromptConfig(n_tokens=2))
    pdi = out["dimensions"]["PDI"]
    assert out["orders"] == ["forward", "reverse"] and set(pdi["by_order"]) == {"forward", "reverse"}
    for o in pdi["by_order"].values():
        assert o["lowest"] <= o["start"] <= o["highest"] and o["reachable"] in (True, False)
    # the pooled range lies within what the orders reach (the pooled index is their mean)
    assert pdi["lowest"] >= min(o["lowest"] for o in pdi["by_order"].values()) - 1e-9
    assert pdi["highest"] <= max(o["highest"] for o in pdi["by_order"].values()) + 1e-9


@pytest.mark.parametrize("schedule", ["constant", "cosine", "warmup"])
def test_learning_rate_schedules(tmp_path, tiny_model, tiny_tokenizer, schedule):
    session = _session(tiny_model, tiny_tokenizer)
    run = make_alignment(_adam(session, steps=40, lr=0.02, schedule=schedule, validate=None), tmp_path / schedule,
                         session=session)
    lrs = np.array([run.learning_rate(s) for s in range(40)])
    if schedule == "constant":
        assert np.all(lrs == 0.02)
        return
    assert lrs[-1] == pytest.approx(0.002) and lrs.max() == pytest.approx(0.02)
    peak = int(lrs.argmax())
    assert np.all(np.diff(lrs[peak:]) < 0)                       # decays after its peak
    if schedule == "cosine":
        assert peak == 0
    else:                                                        # rises from lr / 10 over the first tenth
        assert peak == 4 and lrs[0] == pytest.approx(0.002) and np.all(np.diff(lrs[:peak + 1]) > 0)


def test_run_json_and_the_table_say_why_a_run_stopped(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(Alignment, "validation_loss", lambda self, z: [5.0, 3.0, 4.0, 6.0, 7.0, 8.0][
        self.state.generation - 1])
    for patience, stopped in (("auto", "patience"), ("none", "budget")):
        result = CliRunner().invoke(app, ["align", "--model", str(tiny_model_dir), "--country", "CN", "--steps", "6",
                                          "--validate-every", "1", "--n-tokens", "2", "--patience", patience,
                                          "--out", str(tmp_path / patience)])
        assert result.exception is None, result.output
        record = json.loads((tmp_path / patience / "run.json").read_text())
        assert record["stopped"] == stopped and record["patience"] == (3 if patience == "auto" else None)
        said = "Stopped early after 5 of 6 steps: 3 validations without a new best" in " ".join(result.output.split())
        assert said == (patience == "auto")
