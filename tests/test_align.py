"""Alignment runs on the tiny model: determinism, resume after SIGKILL, files, PEFT export, errors, split scoring."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from culturealign.config import AlignConfig
from culturealign.align import align
from culturealign.cli import app
from culturealign.executors import LocalExecutor
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.models import LoadedModel
from culturealign.config import SoftPromptConfig
from culturealign.softprompt import PromptSpace, SoftPrompt
from culturealign.errors import CultureAlignError
from culturealign.targets import lookup


def _session(tiny_model, tiny_tokenizer):
    lm = LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny")
    return Session(MeasureConfig(model="tiny", constants="zero", order="forward"), lm=lm)


def _config(seed=0, **kw):
    soft = SoftPromptConfig(n_tokens=kw.pop("n_tokens", 3), placement=kw.pop("placement", "suffix"),
                            space=kw.pop("space", "subspace"), subspace_dim=8, scale=kw.pop("scale", 2.0))
    return AlignConfig(country="CN", optimizer="cma", popsize=4, budget=kw.pop("budget", 16), seed=seed, soft=soft,
                       measure=MeasureConfig(model="tiny", constants="zero", order="forward"), **kw)


def test_same_seed_same_result_and_files(tmp_path, tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer)
    a = align(_config(seed=1), tmp_path / "a", session=session)
    b = align(_config(seed=1), tmp_path / "b", session=session)
    c = align(_config(seed=2), tmp_path / "c", session=session)
    assert a["best"]["loss"] == b["best"]["loss"] != c["best"]["loss"]
    pa, pb = SoftPrompt.load(tmp_path / "a"), SoftPrompt.load(tmp_path / "b")
    assert torch.equal(pa.embeddings, pb.embeddings)
    assert a["status"] == "finished" and a["evaluations"] == 16 and a["generations"] == 4
    assert {"config", "seed", "constants", "country", "versions", "wall_time_s"} <= set(a)
    history = (tmp_path / "a" / "history.csv").read_text().splitlines()
    assert len(history) == 5 and history[0].startswith("generation,evaluations,forward_equivalents,wall_s,loss,pooled_loss")
    rows = [dict(zip(history[0].split(","), line.split(","))) for line in history[1:]]
    selected = [float(r["best_validation_loss"]) for r in rows]  # the validation wording picks the saved prompt
    assert selected == sorted(selected, reverse=True) and float(rows[-1]["best_loss"]) == pytest.approx(a["best"]["loss"])
    # the saved prompt reproduces the recorded loss and carries its provenance
    assert pa.metadata["country"] == "China" and pa.metadata["seed"] == 1 and pa.placement == "suffix"
    rec = session.measure(lookup("CN"), "naive", pa)
    assert rec["loss"] == pytest.approx(a["best"]["loss"], abs=1e-4)


def test_existing_run_folder_is_not_overwritten(tmp_path, tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer)
    align(_config(budget=4), tmp_path / "r", session=session)
    with pytest.raises(CultureAlignError, match="--force"):
        align(_config(budget=4), tmp_path / "r", session=session)
    assert align(_config(budget=8), tmp_path / "r", session=session, force=True)["evaluations"] == 8


def test_search_spaces_map_to_the_embedding_scale():
    p0 = torch.zeros(4, 16)
    z = np.random.default_rng(0).standard_normal((200, 32))
    sub = PromptSpace(p0, 0.5, SoftPromptConfig(n_tokens=4, space="subspace", subspace_dim=32, scale=2.0), seed=0)
    assert sub(z).shape == (200, 4, 16)
    assert sub(z).std().item() == pytest.approx(1.0, rel=0.1)  # scale 2 x sigma 0.5
    full = PromptSpace(p0, 0.5, SoftPromptConfig(n_tokens=4, space="full", scale=1.0), seed=0)
    assert full.dim == 64 and torch.allclose(full(np.ones(64))[0], torch.full((4, 16), 0.5))


def _wait_for_rows(history, rows: int, seconds: float = 300) -> None:
    """Wait until ``history`` (a history.csv being written) has ``rows`` rows after its header."""
    deadline = time.time() + seconds
    while time.time() < deadline and not (history.exists() and len(history.read_text().splitlines()) > rows):
        time.sleep(0.02)


def _history_without_time(folder):
    """history.csv rows without the wall-clock column (the only one a resumed run may change)."""
    import csv

    rows = list(csv.DictReader((folder / "history.csv").open()))
    assert rows and all(float(r["wall_s"]) > 0 for r in rows)
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def _cli(*args, env):
    # SIG_DFL: a test run started in the background (bash `&`, nohup) hands SIGINT down as ignored, and a Python
    # started with SIGINT ignored never raises KeyboardInterrupt, so the Ctrl-C test would see a finished run
    return subprocess.Popen([sys.executable, "-m", "culturealign.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    env = {**os.environ, "CULTUREALIGN_CACHE": str(tmp_path / "cache")}
    common = ["align", "--optimizer", "cma", "--country", "IN", "--model", tiny_model_dir, "--constants", "zero", "--order", "forward",
              "--popsize", "4", "--budget", "120", "--n-tokens", "2", "--subspace-dim", "8", "--seed", "5", "--json"]
    full = _cli(*common, "--out", tmp_path / "full", env=env)
    out_full, err = full.communicate(timeout=600)
    assert full.returncode == 0, err
    killed = _cli(*common, "--out", tmp_path / "killed", env=env)
    _wait_for_rows(tmp_path / "killed" / "history.csv", 3)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    run = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert run["status"] == "running"  # it really died mid-way
    resumed = _cli("align", "--out", tmp_path / "killed", "--resume", "--json", env=env)
    out_resumed, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    a, b = json.loads(out_full), json.loads(out_resumed)
    # the default patience (3 validations without a new best) may end it before the budget: the resumed run too
    assert b["evaluations"] == a["evaluations"] and b["stopped"] == a["stopped"]
    assert a["stopped"] in ("budget", "patience") and (a["evaluations"] == 120) == (a["stopped"] == "budget")
    assert b["best"]["loss"] == a["best"]["loss"]
    assert torch.equal(SoftPrompt.load(tmp_path / "full").embeddings, SoftPrompt.load(tmp_path / "killed").embeddings)
    assert _history_without_time(tmp_path / "full") == _history_without_time(tmp_path / "killed")

    # Ctrl-C: a clean exit with the best prompt so far and a resumable checkpoint
    interrupted = _cli(*common, "--out", tmp_path / "int", env=env)
    _wait_for_rows(tmp_path / "int" / "history.csv", 2)
    interrupted.send_signal(signal.SIGINT)
    _, err = interrupted.communicate(timeout=120)
    assert interrupted.returncode == 130 and "--resume" in err and "Traceback" not in err
    assert json.loads((tmp_path / "int" / "run.json").read_text())["status"] == "interrupted"
    assert SoftPrompt.load(tmp_path / "int").embeddings.shape == (2, 32)
    resumed = _cli("align", "--out", tmp_path / "int", "--resume", "--json", env=env)
    out_int, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert json.loads(out_int)["best"]["loss"] == a["best"]["loss"]


def test_peft_adapter_loads_and_matches_our_prefix_scoring(tmp_path, tiny_tokenizer):
    from peft import PeftModel

    from conftest import make_model
    from culturealign.config import PromptConfig
    from culturealign.prompts import build_rows
    from culturealign.backends.hf import SurveyScorer
    from culturealign.instrument import Questionnaire

    ours, base = make_model(tiny_tokenizer), make_model(tiny_tokenizer)
    emb = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    SoftPrompt(emb, "prefix", {"country": "China"}).save(tmp_path / "sp", base_model="tiny")
    peft_model = PeftModel.from_pretrained(base, tmp_path / "sp").eval()
    rows = build_rows(Questionnaire.builtin(), tiny_tokenizer, PromptConfig("naive", order="forward"))[:4]
    scorer = SurveyScorer(ours, tiny_tokenizer, rows)
    probs = scorer.score(emb.unsqueeze(0), "prefix").probs[0]
    for r in range(len(rows)):
        ids = torch.tensor([scorer.head_ids[r] + scorer.tail_ids[r]])
        with torch.no_grad():
            logits = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
        peft_probs = torch.softmax(logits[scorer.option_ids], -1).numpy()
        np.testing.assert_allclose(peft_probs, probs[r], atol=1e-5)
    # and a plain model without the adapter gives something else
    assert np.abs(scorer.score(None).probs[0] - probs).max() > 1e-3


def test_soft_prompt_errors_are_clear(tmp_path, tiny_model_dir):
    SoftPrompt(torch.zeros(2, 64), "suffix", {"model": "other"}).save(tmp_path / "wide")
    runner = CliRunner()
    res = runner.invoke(app, ["measure", "--country", "CN", "--model", str(tiny_model_dir), "--constants", "zero",
                              "--soft-prompt", str(tmp_path / "wide")])
    assert res.exit_code == 2 and "hidden size 64 but the model has 32" in res.output and isinstance(res.exception, SystemExit)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "soft_prompt.safetensors").write_bytes(b"\x00garbage" * 10)
    res = runner.invoke(app, ["measure", "--country", "CN", "--model", str(tiny_model_dir), "--constants", "zero",
                              "--soft-prompt", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "corrupt" in res.output and isinstance(res.exception, SystemExit)
    res = runner.invoke(app, ["align", "--out", str(tmp_path / "nothing"), "--resume", "--country", "CN"])
    assert res.exit_code == 2 and "cannot resume" in res.output


def test_compare_and_generate_with_a_run(tmp_path, tiny_model_dir):
    runner = CliRunner()
    res = runner.invoke(app, ["align", "--optimizer", "cma", "--country", "CN", "--out", str(tmp_path / "run"), "--model", str(tiny_model_dir),
                              "--constants", "zero", "--order", "forward", "--popsize", "4", "--budget", "8",
                              "--placement", "prefix", "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "adapter_config.json").is_file()  # prefix placement exports a PEFT adapter
    res = runner.invoke(app, ["compare", str(tmp_path / "run"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    methods = [r["method"] for r in out["rows"]]
    assert methods == ["target", "reference mean", "published mean", "naive", "persona", "icl", str(tmp_path / "run")]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert out["rows"][-1]["loss"] == pytest.approx(run["best"]["loss"], abs=1e-4)
    # beside training: the validation wording that picked this prompt, scored again to the run's own number
    assert out["wordings"] == {"validation": "instrument:vsm2013-validation"}
    assert out["rows"][-1]["wordings"]["validation"] == pytest.approx(run["wordings"]["validation"]["best_loss"],
                                                                      abs=1e-4)
    assert out["rows"][1]["loss"] == pytest.approx(run["reference_mean_loss"])
    res = runner.invoke(app, ["generate", "--soft-prompt", str(tmp_path / "run"), "--model", str(tiny_model_dir),
                              "--max-new-tokens", "5", "Hello"])
    assert res.exit_code == 0, res.output


# ---- the evaluator seam: a population split over workers -----------------------------------------------------------
class _Workers(LocalExecutor):
    """Three workers in this process sharing one Session: each chunk a SplitEvaluator hands over is noted."""

    workers = 3

    def __init__(self, session):
        super().__init__(context=session)
        self.chunks = []

    def submit(self, fn, *args):
        self.chunks.append(len(args[-1]))
        return super().submit(fn, *args)

    def describe(self):
        return {"kind": "three-in-process"}


def _without_time_and_executor(record):
    return {k: v for k, v in record.items() if k not in ("wall_time_s", "executor", "argv")}


def test_a_population_split_over_workers_scores_as_one_batch(tmp_path, tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer)
    local = align(_config(budget=8), tmp_path / "local", session=session)
    workers = _Workers(session)
    split = align(_config(budget=8), tmp_path / "split", session=session, executor=workers)
    assert workers.chunks == [2, 1, 1] * 2  # contiguous chunks of popsize 4, one per worker, two generations
    assert split["executor"] == {"kind": "three-in-process"} and local["executor"] == {"kind": "local"}
    assert _without_time_and_executor(split) == _without_time_and_executor(local)
    assert _history_without_time(tmp_path / "split") == _history_without_time(tmp_path / "local")
    assert torch.equal(SoftPrompt.load(tmp_path / "split").embeddings, SoftPrompt.load(tmp_path / "local").embeddings)

    # a split run stopped after its first generation resumes in this process from the same checkpoint
    def stop(run, row):
        if row["generation"] == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        align(_config(budget=8), tmp_path / "mixed", session=session, executor=_Workers(session), on_generation=stop)
    resumed = align(None, tmp_path / "mixed", resume=True, session=session)
    assert _without_time_and_executor(resumed) == _without_time_and_executor(local)
    assert _history_without_time(tmp_path / "mixed") == _history_without_time(tmp_path / "local")


def test_split_scoring_refuses_workers_of_other_settings_and_gradient_runs(tmp_path, tiny_model, tiny_tokenizer):
    lm = LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny")
    other = Session(MeasureConfig(model="tiny", constants="zero", order="reverse"), lm=lm)
    with pytest.raises(CultureAlignError, match="do not hold a Session of this run's measurement settings"):
        align(_config(budget=4), tmp_path / "other", session=_session(tiny_model, tiny_tokenizer),
              executor=LocalExecutor(context=other))
    with pytest.raises(CultureAlignError, match="cannot be split over --executor local"):
        adam = AlignConfig(country="CN", optimizer="adam", steps=2, soft=SoftPromptConfig(n_tokens=3, placement="suffix"),
                       measure=MeasureConfig(model="tiny", constants="zero", order="forward"))
        align(adam, tmp_path / "adam", session=other, executor=LocalExecutor(context=other))
    assert not (tmp_path / "adam").exists()
    # on the command line: before Ray starts (no Ray is started here), and the Ray options need --executor ray
    runner = CliRunner()
    res = runner.invoke(app, ["align", "--country", "CN", "--out", str(tmp_path / "cli"), "--optimizer", "adam",
                              "--executor", "ray"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert "--optimizer adam takes gradients through one model" in res.output
    res = runner.invoke(app, ["align", "--country", "CN", "--out", str(tmp_path / "cli"), "--actors", "2"])
    assert res.exit_code == 2 and "need --executor ray" in res.output
    assert not (tmp_path / "cli").exists()


def test_align_command_hands_its_populations_to_the_ray_executor(tmp_path, tiny_model_dir, monkeypatch):
    """The command's wiring, with the Ray executor replaced by workers in this process (Ray itself: test_ray.py)."""
    asked = []

    def in_process(measure, address, actors, gpus_per_actor):
        asked.append((measure, address, actors, gpus_per_actor))
        return _Workers(Session(measure))

    monkeypatch.setattr("culturealign.cli._ray_executor", in_process)
    common = ["--out", str(tmp_path / "run"), "--executor", "ray", "--actors", "3", "--json"]
    res = CliRunner().invoke(app, ["align", "--optimizer", "cma", "--country", "CN", "--model", str(tiny_model_dir),
                                   "--constants", "zero", "--order", "forward", "--popsize", "4", "--budget", "8",
                                   "--n-tokens", "2", *common])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["executor"] == {"kind": "three-in-process"}
    assert asked[0][0].model == str(tiny_model_dir) and asked[0][1:] == (None, 3, None)
    res = CliRunner().invoke(app, ["align", "--resume", *common])  # the settings come from the checkpoint
    assert res.exit_code == 0, res.output
    assert asked[1][0] == asked[0][0] and json.loads(res.stdout)["evaluations"] == 8
