"""The experiment orchestration on the tiny model: every method x country x seed, summary, resume."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_align import _history_without_time
import torch
from typer.testing import CliRunner

from culturealign.config import AlignConfig
from culturealign.cli import app
from culturealign.errors import CultureAlignError
from culturealign.executors import LocalExecutor, RayExecutor
from culturealign.io import to_json
from culturealign.experiment import ExperimentConfig, plan, read_config, run_experiment
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.models import LoadedModel
from culturealign.report import write_report
from culturealign.config import SoftPromptConfig
from culturealign.targets import all_countries


@pytest.fixture
def one_thread():
    """Torch on one thread, as the CLI run below (OMP_NUM_THREADS=1): float32 sums over another number of threads
    differ in the last bits, and the comparisons are exact. (Also much faster on 2 busy cores.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config():
    measure = MeasureConfig(model="tiny", constants="zero", order="forward")
    soft = SoftPromptConfig(n_tokens=2, subspace_dim=4)
    return ExperimentConfig(countries=["China", "U.S.A."], seeds=2, evaluations={"culturalbench": 2},
                            align=AlignConfig(country="", optimizer="cma", popsize=4, budget=8, soft=soft, measure=measure))


def test_experiment_rows_summary_and_resume(tmp_path, tiny_model, tiny_tokenizer, one_thread):
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
    assert res["provenance"]["executor"] == {"kind": "local"}
    # rows are in plan order: per country the reference mean, the prompting baselines, the seeds
    assert [(r["country"], r["method"], r["seed"]) for r in rows[:6]] == [
        ("China", "reference mean", None), ("China", "naive", None), ("China", "persona", None),
        ("China", "icl", None), ("China", "soft prompt", 0), ("China", "soft prompt", 1)]

    # resuming a finished experiment redoes nothing and gives the same file
    finished = tmp_path / "exp" / "runs" / "CHI-seed0" / "run.json"
    before = os.stat(finished).st_mtime_ns
    resumed = run_experiment(None, tmp_path / "exp", resume=True, session=session)
    assert os.stat(finished).st_mtime_ns == before
    assert resumed["rows"] == rows


def test_report_command_on_an_experiment(tmp_path, tiny_model, tiny_tokenizer, one_thread):
    session = Session(MeasureConfig(model="tiny", constants="zero", order="forward"),
                      lm=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))
    cfg = _config()
    cfg.seeds = 1
    results = run_experiment(cfg, tmp_path / "exp", session=session)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "exp" / "report.html").read_text()
    assert html.count("<img") >= 5 and "China" in html
    # the atlas (target against achieved per dimension, every country) and where alignment helps
    assert "<img alt='atlas.png' src='data:image/png;base64," in html
    assert (tmp_path / "exp" / "atlas.png").read_bytes().startswith(b"\x89PNG")
    assert "<h2>Where alignment helps</h2>" in html and "countries.</p>" in html
    for country in ("China", "U.S.A."):
        loss = {r["method"]: r["loss"] for r in results["rows"] if r["country"] == country}
        best = min(("naive", "persona", "icl", "reference mean"), key=loss.get)
        verdict = "helps" if loss["soft prompt"] < loss[best] else "does not help"
        label = "ICL" if best == "icl" else best
        assert (f"<tr><td>{country}</td><td>{loss['soft prompt']:.2f}</td><td>-</td><td>1</td><td>{label}</td>"
                f"<td>{loss[best]:.2f}</td><td>{loss['soft prompt'] - loss[best]:.2f}</td><td>{verdict}</td></tr>"
                in html)


def test_report_of_every_country(tmp_path):
    """--countries all: the atlas and the helps table cover every country; no figure per country."""
    countries = [c for c in all_countries() if len(c.scores) == 6][:15]
    rows = []
    for i, c in enumerate(countries):
        for method, loss in (("reference mean", 100.0), ("naive", 90.0), ("persona", 80.0), ("icl", 85.0)):
            rows.append({"country": c.name, "method": method, "seed": None, "loss": loss,
                         "indices": {d: v + 10 for d, v in c.scores.items()}, "culturalbench": None})
        for seed, delta in enumerate((-1.0, 1.0) if i % 3 == 2 else (-30.0 + i, -29.0 + i)):
            rows.append({"country": c.name, "method": "soft prompt", "seed": seed, "loss": 80.0 + delta,
                         "indices": {d: v + 2 for d, v in c.scores.items()}, "culturalbench": None})
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "experiment.json").write_text(json.dumps({"config": {}, "countries": [c.name for c in countries]}))
    (exp / "results.json").write_text(json.dumps({"targets": {c.name: c.scores for c in countries}, "rows": rows}))
    html = write_report(exp).read_text()
    assert "atlas.png" in html and "radar_" not in html and "dimensions.png" not in html
    assert "15 countries: the per-country radar charts" in html
    assert "beats the best baseline for" in html
    verdicts = re.findall(r"<td>(helps|hurts|no clear difference|does not help)</td></tr>", html)
    assert len(verdicts) == 15 and verdicts.count("no clear difference") == 5
    assert verdicts.count("hurts") == sum(-30 + i > 0 for i in range(15) if i % 3 != 2)


# ---- a real interruption: SIGKILL inside an alignment unit, then --resume ----------------------------------------
def _history_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def test_experiment_killed_inside_an_alignment_unit_resumes(tmp_path, tiny_model_dir, one_thread):
    exp = tmp_path / "exp"
    cli = [sys.executable, "-m", "culturealign.cli", "experiment"]
    args = ["--countries", "CN,US", "--seeds", "1", "--optimizer", "cma", "--budget", "40", "--popsize", "4", "--n-tokens", "2",
            "--subspace-dim", "4", "--culturalbench-limit", "1", "--model", str(tiny_model_dir), "--constants", "zero",
            "--out", str(exp)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torch on one thread, as the in-process reference run below
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:  # a file, not a pipe: a full pipe would stall the child
        proc = subprocess.Popen([*cli, *args], env=env, stdout=subprocess.DEVNULL, stderr=err)
    watched = exp / "runs" / "USA-seed0"  # the second alignment unit: the first one is then finished
    deadline = time.monotonic() + 240
    try:
        while _history_rows(watched / "history.csv") < 2:
            assert proc.poll() is None, f"the experiment ended before it could be killed: {log.read_text()}"
            assert time.monotonic() < deadline, "the experiment made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # killed inside the unit: its run is neither finished nor recorded, the first run is
    assert json.loads((watched / "run.json").read_text())["status"] == "running"
    assert 2 <= _history_rows(watched / "history.csv") < 10
    saved = json.loads((exp / "results.json").read_text())
    assert [(r["country"], r["method"]) for r in saved["rows"]][-1] == ("U.S.A.", "icl")
    finished = exp / "runs" / "CHI-seed0" / "run.json"
    before = os.stat(finished).st_mtime_ns

    resumed = subprocess.run([*cli, "--out", str(exp), "--resume", "--json"], env=env, capture_output=True,
                             text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert os.stat(finished).st_mtime_ns == before  # the finished unit is not run again
    assert json.loads((watched / "run.json").read_text())["evaluations"] == 40

    clean = run_experiment(read_config(exp), tmp_path / "clean")  # the same experiment, uninterrupted
    result = json.loads((exp / "results.json").read_text())
    assert json.loads(resumed.stdout)["rows"] == result["rows"] == clean["rows"]
    assert to_json(result["summary"]) == to_json(clean["summary"])  # (NaN p-values of one seed)
    for run in ("CHI-seed0", "USA-seed0"):  # every column but the wall clock
        assert _history_without_time(exp / "runs" / run) == _history_without_time(tmp_path / "clean" / "runs" / run)


# ---- corrupt or outdated files on --resume: a clear error, never a traceback -----------------------------------
@pytest.fixture(scope="module")
def finished_experiment(tmp_path_factory, tiny_model, tiny_tokenizer):
    session = Session(MeasureConfig(model="tiny", constants="zero", order="forward"),
                      lm=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))
    cfg = _config()
    cfg.countries, cfg.seeds, cfg.evaluations = ["China"], 1, {"culturalbench": 0}
    folder = tmp_path_factory.mktemp("finished") / "exp"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # much faster on 2 busy cores
    try:
        run_experiment(cfg, folder, session=session)
    finally:
        torch.set_num_threads(threads)
    return folder, session


def _edit_json(path: Path, edit) -> None:
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _drop_soft_prompt_row(data: dict) -> dict:
    data["rows"] = [r for r in data["rows"] if r["method"] != "soft prompt"]
    return data


BAD_FOLDERS = {
    "experiment.json not JSON": (lambda d: (d / "experiment.json").write_text('{"config": {'),
                                 r"experiment record .*experiment\.json is unreadable or not valid JSON"),
    "experiment.json a list": (lambda d: (d / "experiment.json").write_text("[1, 2]"),
                               r"experiment record .* is outdated or corrupt"),
    "experiment.json without align": (lambda d: _edit_json(d / "experiment.json",
                                                           lambda x: {"config": {"countries": ["China"]}}),
                                      r"outdated or corrupt .*config\.align"),
    "experiment.json with an unknown key": (
        lambda d: _edit_json(d / "experiment.json", lambda x: {"config": {**x["config"], "budget": 3}}),
        r"outdated or corrupt \(TypeError"),
    "experiment.json seeds not a count": (
        lambda d: _edit_json(d / "experiment.json", lambda x: {"config": {**x["config"], "seeds": "two"}}),
        r"'seeds' is not a count"),
    "experiment.json a bad setting": (  # named as the file's field, not as a flag
        lambda d: _edit_json(d / "experiment.json", lambda x: {"config": {
            **x["config"], "align": {**x["config"]["align"], "steps": 0}}}),
        r"outdated or corrupt \(ConfigError: AlignConfig\.steps must be at least 1, not 0\)"),
    "experiment.json unknown country": (
        lambda d: _edit_json(d / "experiment.json", lambda x: {"config": {**x["config"], "countries": ["Atlantis"]}}),
        r"unknown country 'Atlantis'"),
    "results.json truncated": (lambda d: (d / "results.json").write_text('{"rows": [{"coun'),
                               r"experiment results .* not valid JSON"),
    "results.json rows not a list": (lambda d: _edit_json(d / "results.json", lambda x: {**x, "rows": {}}),
                                     r"experiment results .* outdated or corrupt \(no list of 'rows'\)"),
    "results.json row of another plan": (
        lambda d: _edit_json(d / "results.json", lambda x: {**x, "rows": [{**x["rows"][0], "country": "Peru"}]}),
        r"row 0 \('Peru', 'reference mean', seed None\) is not in the experiment's plan"),
    "results.json row without a loss": (
        lambda d: _edit_json(d / "results.json", lambda x: {**x, "rows": [{**x["rows"][0], "loss": "low"}]}),
        r"row 0 lacks a numeric 'loss'"),
    "run.json not JSON": (lambda d: (_edit_json(d / "results.json", _drop_soft_prompt_row),
                                     (d / "runs" / "CHI-seed0" / "run.json").write_text("{")),
                          r"run record .*run\.json is unreadable or not valid JSON.*delete the run folder"),
    "run.json outdated": (lambda d: (_edit_json(d / "results.json", _drop_soft_prompt_row),
                                     _edit_json(d / "runs" / "CHI-seed0" / "run.json",
                                                lambda x: {k: v for k, v in x.items() if k != "best"})),
                          r"run record .* outdated or corrupt \(no best loss and indices\)"),
    "run.json of another run": (lambda d: (_edit_json(d / "results.json", _drop_soft_prompt_row),
                                           _edit_json(d / "runs" / "CHI-seed0" / "run.json",
                                                      lambda x: {**x, "config": {**x["config"], "seed": 4}})),
                                r"it is the run of 'China', seed 4, not of China: soft prompt, seed 0"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_resume_with_a_corrupt_or_outdated_file_is_a_clear_error(tmp_path, finished_experiment, case):
    source, session = finished_experiment
    folder = tmp_path / "exp"
    shutil.copytree(source, folder)
    damage, message = BAD_FOLDERS[case]
    damage(folder)
    with pytest.raises(CultureAlignError, match=message):
        run_experiment(None, folder, resume=True, session=session)


def test_resume_error_in_the_cli_is_one_line(tmp_path, finished_experiment):
    folder = tmp_path / "exp"
    shutil.copytree(finished_experiment[0], folder)
    (folder / "experiment.json").write_text("not json")
    res = CliRunner().invoke(app, ["experiment", "--out", str(folder), "--resume"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert "error: experiment record" in res.output and "not valid JSON" in res.output


def test_cli_options_are_checked_before_any_work(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["experiment", "--out", str(tmp_path / "e"), "--executor", "spark"])
    assert res.exit_code == 2 and "unknown executor 'spark'" in res.output
    res = runner.invoke(app, ["experiment", "--out", str(tmp_path / "e"), "--actors", "2"])
    assert res.exit_code == 2 and "need --executor ray" in res.output
    four = next(c for c in all_countries() if sorted(c.scores) == ["IDV", "MAS", "PDI", "UAI"])
    res = runner.invoke(app, ["experiment", "--out", str(tmp_path / "e"), "--countries", f"CN,{four.code}"])
    assert res.exit_code == 2 and "restrict the loss with --dimensions PDI,IDV,MAS,UAI" in res.output
    assert not (tmp_path / "e").exists()


def test_ray_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(CultureAlignError, match=r'pip install "culturealign\[ray\]"'):
        RayExecutor(lambda: None)


# ---- the plan and the executor interface ------------------------------------------------------------------------
def test_countries_all_plans_every_country_with_the_dimensions(tmp_path, monkeypatch):
    seen = {}

    def fake_run(config, out, **kwargs):
        seen["config"], seen["executor"] = config, kwargs["executor"]
        return {"rows": [], "summary": {}}

    monkeypatch.setattr("culturealign.experiment.run_experiment", fake_run)
    res = CliRunner().invoke(app, ["experiment", "--out", str(tmp_path / "e"), "--countries", "all", "--json"])
    assert res.exit_code == 0, res.output
    six = [c.name for c in all_countries() if len(c.scores) == 6]
    only_four = next(c.name for c in all_countries() if sorted(c.scores) == ["IDV", "MAS", "PDI", "UAI"])
    assert seen["config"].countries == six and "China" in six and only_four not in six
    assert isinstance(seen["executor"], LocalExecutor)
    res = CliRunner().invoke(app, ["experiment", "--out", str(tmp_path / "e"), "--countries", "all",
                                   "--dimensions", "pdi,idv,mas,uai", "--json"])
    assert res.exit_code == 0, res.output
    four = seen["config"].countries
    assert only_four in four and set(six) < set(four)
    assert seen["config"].align.measure.dimensions == ["PDI", "IDV", "MAS", "UAI"]
    assert len(plan(ExperimentConfig(countries=four, seeds=3))) == len(four) * (4 + 3)


def test_local_executor_is_a_nevergrad_executor():
    import nevergrad as ng

    opt = ng.optimizers.OnePlusOne(parametrization=2, budget=30, num_workers=1)
    best = opt.minimize(lambda x: float(((x - 1.0) ** 2).sum()), executor=LocalExecutor())
    assert ((best.value - 1.0) ** 2).sum() < 1.0
    failed = LocalExecutor().submit(lambda: 1 / 0)
    assert failed.done()
    with pytest.raises(ZeroDivisionError):
        failed.result()


class _LastInFirstOut:
    """Two workers whose calls finish in reverse order of submission (run when their result is asked for); records
    how many calls were in flight at each submission."""

    workers = 2

    def __init__(self, session):
        self.local, self.in_flight, self.sizes = LocalExecutor(context=session), [], []

    def submit(self, fn, *args):
        future = _Deferred(self, fn, args)
        self.in_flight.append(future)
        self.sizes.append(len(self.in_flight))
        return future

    def describe(self) -> dict:
        return {"kind": "test"}


class _Deferred:
    def __init__(self, executor, fn, args):
        self.executor, self.call = executor, (fn, args)

    def done(self) -> bool:
        return self is self.executor.in_flight[-1]

    def result(self):
        self.executor.in_flight.remove(self)
        return self.executor.local.submit(self.call[0], *self.call[1]).result()


@pytest.mark.parametrize("constants", ["zero", "anchored"])
def test_units_finishing_out_of_order_give_the_same_results(tmp_path, tiny_model, tiny_tokenizer, one_thread,
                                                             constants):
    from culturealign import constants as consts

    session = Session(MeasureConfig(model="tiny", constants=constants, order="forward"),
                      lm=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"), constants=consts.zero())
    cfg = _config()
    cfg.seeds, cfg.evaluations = 1, {"culturalbench": 0}
    cfg.align.measure.constants = constants
    local = run_experiment(cfg, tmp_path / "local", session=session)
    executor = _LastInFirstOut(session)
    shuffled = run_experiment(cfg, tmp_path / "lifo", session=session, executor=executor)
    assert shuffled["rows"] == local["rows"]
    assert (tmp_path / "lifo" / "results.json").read_text().split('"wall_time_s"')[0] == \
        (tmp_path / "local" / "results.json").read_text().split('"wall_time_s"')[0]
    assert max(executor.sizes) == 2 and len(executor.sizes) == 10 + 1  # 10 units and the provenance
    # anchored constants: the first unit runs alone (it fits them, the others read them from the cache)
    assert executor.sizes[:2] == ([1, 1] if constants == "anchored" else [1, 2])
