"""`evaluate culturalbench` and `evaluate robustness` through the command line on the tiny model."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturealign.cli import app

REWORDED = Path(__file__).resolve().parent.parent / "culturealign" / "data" / "vsm2013" / "vsm2013-reworded.json"
runner = CliRunner()


def test_evaluate_culturalbench_cli(tiny_model_dir):
    res = runner.invoke(app, ["evaluate", "culturalbench", "--country", "CN", "--limit", "3", "--model",
                              str(tiny_model_dir), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_questions"] == 3 and out["n_judgements"] == 12
    assert 0 <= out["question_accuracy"] <= out["judgement_accuracy"] <= 1
    res = runner.invoke(app, ["evaluate", "culturalbench", "--prompt", "persona", "--model", str(tiny_model_dir)])
    assert res.exit_code == 2 and "needs a --country" in res.output


def test_evaluate_robustness_cli(tmp_path, tiny_model_dir):
    res = runner.invoke(app, ["align", "--optimizer", "cma", "--country", "IN", "--out", str(tmp_path / "run"), "--model", str(tiny_model_dir),
                              "--constants", "zero", "--popsize", "4", "--budget", "8", "--json"])
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    res = runner.invoke(app, ["evaluate", "robustness", "--soft-prompt", str(tmp_path / "run"),
                              "--questionnaire", str(REWORDED), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    names = [c["condition"] for c in out["conditions"]]
    assert names == ["training", "forward order only", "reverse order only", "questionnaire vsm2013-reworded.json"]
    assert out["conditions"][0]["loss"] == pytest.approx(run["best"]["loss"], abs=1e-4)
    assert out["conditions"][-1]["questionnaire"].endswith("vsm2013-reworded.json")
    assert len({round(c["loss"], 6) for c in out["conditions"]}) == 4  # each condition is really measured
