"""The evaluations registry: a registered evaluation runs in `experiment` and `evaluate`, unknown names are one clear
error, and CulturalBench results (and older experiment folders) read as before."""
from __future__ import annotations

import functools
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturealign.cli import app
from culturealign.errors import CultureAlignError
from culturealign.evaluations import (EVALUATIONS, Evaluation, NotCovered, get_evaluation, parse_evaluations,
                                      register_evaluation)
from culturealign.executors import RayExecutor
from culturealign.experiment import (ExperimentConfig, Unit, plan, read_config, read_results, run_experiment,
                                     run_unit_on_worker, summarise)
from culturealign.io import to_json
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.report import write_report

PAPER_RUN = Path(__file__).resolve().parent.parent / "docs" / "paper-run"  # an experiment.json with culturalbench_limit
runner = CliRunner()


class Toy(Evaluation):
    """Metrics made of what it was called with, so each one shows that the right thing arrived."""

    title = "Toy check"
    description = "A toy evaluation of the tests."
    headline = "system_chars"

    def check(self, country):
        if country in ("U.S.A.", "US"):
            raise NotCovered(f"the toy has nothing about {country}")

    def run(self, session, country, system, soft_prompt=None, limit=None):
        return {"system_chars": len(system or ""), "hidden": session.backend.hidden_size, "limit": limit,
                "soft_tokens": 0 if soft_prompt is None else soft_prompt.embeddings.shape[0],
                "country": country}  # not a number: the experiment row leaves it out


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(EVALUATIONS, "toy", None)  # undone after the test
    register_evaluation("toy", Toy)
    return "toy"


def _invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def test_a_registered_evaluation_runs_in_the_experiment(toy, tmp_path, tiny_model_dir):
    out = tmp_path / "exp"
    res = _invoke("experiment", "--countries", "CN,US", "--seeds", "1", "--optimizer", "cma", "--budget", "8",
                  "--popsize", "4", "--n-tokens", "2", "--subspace-dim", "4",
                  "--evaluations", "toy:3,culturalbench:0", "--model", tiny_model_dir, "--constants", "zero",
                  "--out", out)
    assert res.exit_code == 0, res.output
    assert "Toy check" in res.output  # its column in the terminal table
    config = json.loads((out / "experiment.json").read_text())["config"]
    assert config["evaluations"] == {"toy": 3, "culturalbench": 0}
    results = json.loads((out / "results.json").read_text())
    rows = {(r["country"], r["method"]): r for r in results["rows"]}
    china = {m: r["toy"] for (c, m), r in rows.items() if c == "China"}
    assert china["reference mean"] is None  # a predictor, not a prompt
    assert china["naive"] == {"system_chars": 0, "hidden": 32, "limit": 3, "soft_tokens": 0}
    assert china["persona"]["system_chars"] > 0 and china["icl"]["system_chars"] > china["persona"]["system_chars"]
    assert china["soft prompt"] == {"system_chars": 0, "hidden": 32, "limit": 3, "soft_tokens": 2}  # its own prompt
    assert all(r["toy"] is None for (c, _), r in rows.items() if c == "U.S.A.")  # not covered: null, no error
    assert all(r["culturalbench"] is None for r in rows.values())  # listed with limit 0: not run
    summary = results["summary"]["China"]["methods"]
    assert summary["persona"]["toy_system_chars"]["mean"] == china["persona"]["system_chars"]
    assert "toy_system_chars" not in results["summary"]["U.S.A."]["methods"]["persona"]
    page = write_report(out).read_text()
    assert "<h2>Toy check</h2>" in page
    assert ("<tr><th>country</th><th>method</th><th>system_chars</th><th>hidden</th><th>limit</th>"
            "<th>soft_tokens</th><th>seeds</th></tr>") in page
    assert f"<tr><td>China</td><td>persona</td><td>{china['persona']['system_chars']}</td><td>32</td>" in page


def test_ray_actors_run_an_evaluation_the_driver_registered(toy, tmp_path, tiny_model_dir):
    """An actor is another process, whose registry lacks what a script registered: the driver hands it the entries."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actor cannot import this test module
    measure = MeasureConfig(model=str(tiny_model_dir), constants="zero", order="forward")
    config = ExperimentConfig(countries=["China"], seeds=0, evaluations={"toy": 4})
    config.align.measure = measure
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="warning")
    try:
        with RayExecutor(functools.partial(Session, measure), actors=1, gpus_per_actor=0) as executor:
            with pytest.raises(CultureAlignError, match="unknown evaluation 'toy'"):  # on its own, it does not know it
                executor.submit(run_unit_on_worker, Unit("China", "naive", None, {"toy": 4}), str(tmp_path)).result()
            results = run_experiment(config, tmp_path / "exp", executor=executor)
    finally:
        ray.shutdown()
    toy_rows = {r["method"]: r["toy"] for r in results["rows"]}
    assert toy_rows["reference mean"] is None and toy_rows["naive"]["limit"] == 4 and toy_rows["naive"]["hidden"] == 32
    assert toy_rows["icl"]["system_chars"] > toy_rows["persona"]["system_chars"] > 0


def test_evaluate_dispatches_through_the_registry(toy, tiny_model_dir):
    res = _invoke("evaluate", "--help")
    assert res.exit_code == 0 and "toy" in res.output and "A toy evaluation of the tests." in res.output
    assert "culturalbench" in res.output and "robustness" in res.output
    res = _invoke("evaluate", "toy", "--country", "CN", "--prompt", "icl", "--limit", "5", "--model",
                  tiny_model_dir, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["country"] == "CN" and out["prompt"] == "icl" and out["limit"] == 5 and out["hidden"] == 32
    assert out["system_chars"] > 100 and out["soft_tokens"] == 0
    res = _invoke("evaluate", "toy", "--country", "US", "--model", tiny_model_dir)
    assert res.exit_code == 2 and "error: the toy has nothing about US" in res.output
    res = _invoke("evaluate", "toy", "--country", "CN", "--model", tiny_model_dir)
    assert res.exit_code == 0 and "Toy check" in res.output and "system_chars 0" in res.output


def test_an_unknown_evaluation_is_one_clear_error(tmp_path):
    res = _invoke("evaluate", "mmlu", "--country", "CN")
    assert res.exit_code == 2 and res.output.count("error:") == 1, res.output
    assert "unknown evaluation 'mmlu': use one of culturalbench, opinions, robustness" in res.output
    res = _invoke("experiment", "--evaluations", "culturalbench:5,mmlu", "--out", tmp_path / "e")
    assert res.exit_code == 2 and "unknown evaluation 'mmlu': use one of culturalbench" in res.output
    assert not (tmp_path / "e").exists()
    res = _invoke("experiment", "--evaluations", "culturalbench:5", "--culturalbench-limit", "3", "--out", tmp_path / "e")
    assert res.exit_code == 2 and "give the CulturalBench limit once" in res.output
    with pytest.raises(CultureAlignError, match="unknown evaluation 'mmlu'"):
        ExperimentConfig(countries=["China"], evaluations={"mmlu": 5})
    with pytest.raises(CultureAlignError, match="the limit of 'culturalbench' must be a count"):
        ExperimentConfig(countries=["China"], evaluations={"culturalbench": -1})
    with pytest.raises(CultureAlignError, match="not name:N"):
        parse_evaluations("culturalbench:-1")
    with pytest.raises(CultureAlignError, match="cannot be named 'loss'"):
        register_evaluation("loss", Toy)


def test_a_registered_class_must_be_an_evaluation(monkeypatch):
    monkeypatch.setitem(EVALUATIONS, "plain", "collections:OrderedDict")
    with pytest.raises(CultureAlignError, match="OrderedDict is not a culturealign.evaluations.Evaluation"):
        get_evaluation("plain")
    monkeypatch.setitem(EVALUATIONS, "missing", "no_such_module_here:Thing")
    with pytest.raises(CultureAlignError, match="evaluation 'missing' is not available here"):
        get_evaluation("missing")


def test_culturalbench_limits_keep_their_old_spelling(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("culturealign.experiment.run_experiment",
                        lambda config, out, **kwargs: seen.update(config=config) or {"rows": [], "summary": {}})
    for args, expected in ((), {"culturalbench": 20}), (("--culturalbench-limit", "-1"), {"culturalbench": None}), \
            (("--culturalbench-limit", "0"), {"culturalbench": 0}), (("--evaluations", "none"), {}):
        res = _invoke("experiment", "--out", tmp_path / "e", "--json", *args)
        assert res.exit_code == 0, res.output
        assert seen["config"].evaluations == expected, args


def test_an_older_experiment_folder_reads_as_before(tmp_path):
    """docs/paper-run was written before the registry (experiment.json: culturalbench_limit): its configuration
    converts on reading, its rows check, the summary recomputes to the stored one and the report's CulturalBench
    table is the one in its report.html."""
    config = read_config(PAPER_RUN)
    assert config.evaluations == {"culturalbench": 20}
    results = read_results(PAPER_RUN / "results.json", plan(config))
    summary = summarise(results["rows"])
    for country in summary.values():   # the label of the test kind was added after this folder was written
        for test in country["soft_prompt_vs"].values():
            assert test.pop("test").startswith("one-sample t")
    assert to_json(summary) == to_json(results["summary"])
    folder = tmp_path / "paper-run"
    shutil.copytree(PAPER_RUN, folder)
    table = re.compile(r"<h2>CulturalBench-Hard</h2>.*?</p>")
    assert table.search(write_report(folder).read_text()).group(0) == \
        table.search((PAPER_RUN / "report.html").read_text()).group(0)
    record = json.loads((PAPER_RUN / "experiment.json").read_text())
    record["config"]["evaluations"] = {"culturalbench": 20}
    (folder / "experiment.json").write_text(json.dumps(record))
    with pytest.raises(CultureAlignError, match="both 'evaluations' and the older 'culturalbench_limit'"):
        read_config(folder)
