"""The experiment orchestration on the tiny model: every method x country x seed, summary, resume."""
import json
import os

import pytest
from typer.testing import CliRunner

from culturealign.align import AlignConfig
from culturealign.cli import app
from culturealign.experiment import ExperimentConfig, run_experiment
from culturealign.measure import MeasureConfig, Session
from culturealign.models import LoadedModel
from culturealign.softprompt import SoftPromptConfig


def _config():
    measure = MeasureConfig(model="tiny", constants="zero", order="forward")
    soft = SoftPromptConfig(n_tokens=2, subspace_dim=4)
    return ExperimentConfig(countries=["China", "U.S.A."], seeds=2, culturalbench_limit=2,
                            align=AlignConfig(country="", popsize=4, budget=8, soft=soft, measure=measure))


def test_experiment_rows_summary_and_resume(tmp_path, tiny_model, tiny_tokenizer):
    session = Session(MeasureConfig(model="tiny", constants="zero", order="forward"),
                      lm=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))
    res = run_experiment(_config(), tmp_path / "exp", session=session)
    rows = res["rows"]
    # 2 countries x (naive, persona, icl, reference mean + 2 soft-prompt seeds)
    assert len(rows) == 12
    soft = [r for r in rows if r["method"] == "soft prompt"]
    assert sorted((r["country"], r["seed"]) for r in soft) == [("China", 0), ("China", 1), ("U.S.A.", 0), ("U.S.A.", 1)]
    assert all(r["culturalbench"]["n_questions"] == 2 for r in rows if r["method"] != "reference mean")
    summary = res["summary"]["China"]
    losses = [r["loss"] for r in soft if r["country"] == "China"]
    assert summary["methods"]["soft prompt"]["loss"]["mean"] == pytest.approx(sum(losses) / 2)
    assert summary["methods"]["soft prompt"]["loss"]["n"] == 2
    assert set(summary["soft_prompt_vs"]) == {"naive", "persona", "icl", "reference mean"}
    run = json.loads((tmp_path / "exp" / "runs" / "CHI-seed1" / "run.json").read_text())
    assert run["seed"] == 1 and run["best"]["loss"] == pytest.approx(losses[1])

    # simulate an interruption after the first U.S.A. seed: drop the last row and the unfinished run's state
    saved = json.loads((tmp_path / "exp" / "results.json").read_text())
    saved["rows"] = saved["rows"][:-1]
    (tmp_path / "exp" / "results.json").write_text(json.dumps(saved))
    finished = tmp_path / "exp" / "runs" / "CHI-seed0" / "run.json"
    before = os.stat(finished).st_mtime_ns
    resumed = run_experiment(None, tmp_path / "exp", resume=True, session=session)
    assert len(resumed["rows"]) == 12
    assert os.stat(finished).st_mtime_ns == before  # finished runs are not redone
    assert [r["loss"] for r in resumed["rows"]] == [r["loss"] for r in rows]


def test_report_command_on_an_experiment(tmp_path, tiny_model, tiny_tokenizer):
    session = Session(MeasureConfig(model="tiny", constants="zero", order="forward"),
                      lm=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))
    cfg = _config()
    cfg.seeds, cfg.countries = 1, ["China"]
    run_experiment(cfg, tmp_path / "exp", session=session)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "exp" / "report.html").read_text()
    assert html.count("<img") >= 3 and "China" in html
