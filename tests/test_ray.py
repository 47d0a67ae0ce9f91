"""The Ray executor on one machine with no cluster (ray.init(num_cpus=2)), on the tiny model loaded by path."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import pytest
from test_align import _history_without_time
import ray
import torch

from culturealign.config import AlignConfig
from culturealign.align import align
from culturealign.errors import CultureAlignError
from culturealign.executors import RayExecutor, worker_context
from culturealign.experiment import ExperimentConfig, Unit, run_experiment, run_unit
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.config import SoftPromptConfig
from culturealign.softprompt import SoftPrompt

pytestmark = pytest.mark.ray

# the functions below run on the actors: ship them by value (the actors cannot import this test module)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="warning",
             runtime_env={"env_vars": {"CULTUREALIGN_CACHE": str(tmp_path_factory.mktemp("ray-cache"))}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def executor(cluster, tiny_model_dir):
    """Two actors, each loading the tiny model once by path; kept for the whole module."""
    ex = RayExecutor(functools.partial(Session, _measure(tiny_model_dir)), actors=2, gpus_per_actor=0, max_retries=2)
    yield ex
    ex.shutdown()


def _measure(model_dir) -> MeasureConfig:
    return MeasureConfig(model=str(model_dir), constants="zero", order="forward")


def _config(model_dir, budget: int = 8) -> ExperimentConfig:
    soft = SoftPromptConfig(n_tokens=2, subspace_dim=4)
    return ExperimentConfig(countries=["China", "U.S.A."], seeds=2, evaluations={"culturalbench": 2},
                            align=AlignConfig(country="", optimizer="cma", popsize=4, budget=budget, soft=soft,
                                              measure=_measure(model_dir)))


@pytest.fixture
def one_thread():
    """Torch on one thread, as in the actors (num_cpus=1): float32 sums over another number of threads differ in
    the last bits, and the comparisons below are exact."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _numbers(results: dict) -> list:
    return [(r["country"], r["method"], r["seed"], r["loss"], r["indices"], r["culturalbench"])
            for r in results["rows"]]


def test_ray_experiment_equals_local(tmp_path, executor, tiny_model_dir, one_thread):
    config = _config(tiny_model_dir)
    local = run_experiment(config, tmp_path / "local")
    remote = run_experiment(config, tmp_path / "ray", executor=executor)
    assert len(remote["rows"]) == 12
    assert _numbers(remote) == _numbers(local)
    assert remote["summary"] == local["summary"]
    assert remote["provenance"]["executor"] == {"kind": "ray", "actors": 2, "gpus_per_actor": 0, "max_retries": 2}
    saved = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert _numbers(saved) == _numbers(local) and list(saved) == list(local)
    # both actors did the work: the pids that answered differ
    pids = {ray.get(a.pid.remote()) for a in executor.actors}
    assert len(pids) == 2 and os.getpid() not in pids


def _unit(model_dir) -> Unit:
    cfg = _config(model_dir, budget=24).align
    cfg.country, cfg.seed = "China", 1
    return Unit("China", "soft prompt", 1, {"culturalbench": 0}, cfg)


def _dies_once_after_two_generations(unit: Unit, out: str) -> dict:
    """run_unit that kills its own actor process after the second generation, the first time it runs; the run
    after the restart notes the first generation it sees."""
    marker, seen = Path(out) / "died", Path(out) / "first-generation-after-restart"

    def hook(alignment, row):
        if not marker.exists():
            if row["generation"] == 2:
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the actor dies mid-unit, as on a lost node or an out-of-memory kill
        elif not seen.exists():
            seen.write_text(f"{row['generation']} {os.getpid()}")

    return run_unit(unit, worker_context(), out, on_generation=hook)


def test_killed_actor_resumes_the_unit_from_its_checkpoint(tmp_path, executor, tiny_model_dir, one_thread):
    unit = _unit(tiny_model_dir)
    row = executor.submit(_dies_once_after_two_generations, unit, str(tmp_path / "killed")).result()
    assert (tmp_path / "killed" / "died").is_file()
    generation, pid = (tmp_path / "killed" / "first-generation-after-restart").read_text().split()
    assert generation == "3"  # resumed after generation 2, not started again
    assert pid != (tmp_path / "killed" / "died").read_text()  # in a new actor process

    session = Session(_measure(tiny_model_dir))
    clean = run_unit(unit, session, tmp_path / "clean")
    assert row == clean
    killed, ref = unit.run_dir(tmp_path / "killed"), unit.run_dir(tmp_path / "clean")
    assert _history_without_time(killed) == _history_without_time(ref)  # every column but the wall clock
    run_k, run_c = (json.loads((d / "run.json").read_text()) for d in (killed, ref))
    assert run_k["status"] == run_c["status"] == "finished" and run_k["generations"] == 6
    assert run_k["best"] == run_c["best"] and run_k["evaluations"] == run_c["evaluations"] == 24
    assert SoftPrompt.load(killed).embeddings.equal(SoftPrompt.load(ref).embeddings)


def _fails() -> None:
    raise CultureAlignError("a clear message from the worker")


def test_a_worker_error_reaches_the_driver_as_is(executor):
    with pytest.raises(CultureAlignError, match="^a clear message from the worker$"):
        executor.submit(_fails).result()


# ---- align: each population split over the actors ------------------------------------------------------------------
class _Noting:
    """The module's executor, noting the actor of every call; ``die_once`` (a file) makes the first call kill its
    actor's process mid-call, as a lost node or an out-of-memory kill would."""

    def __init__(self, executor, die_once: Path | None = None):
        self.executor, self.die_once, self.actors = executor, die_once, []
        self.workers = executor.workers

    def submit(self, fn, *args):
        if self.die_once is not None:
            fn, args = _dies_once, (str(self.die_once), fn, *args)
        future = self.executor.submit(fn, *args)
        self.actors.append(future.actor)
        return future

    def describe(self):
        return self.executor.describe()


def _dies_once(marker: str, fn, *args):
    if not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return fn(*args)


def _align_config(model_dir) -> AlignConfig:
    return AlignConfig(country="China", optimizer="cma", popsize=4, budget=8, seed=3, measure=_measure(model_dir),
                       soft=SoftPromptConfig(n_tokens=2, subspace_dim=4))


def _same_run(tmp_path, name: str, model_dir, record: dict) -> None:
    """The run in ``tmp_path / name`` ended exactly as the same run scored in this process."""
    local = align(_align_config(model_dir), tmp_path / "local", session=Session(_measure(model_dir)))
    assert record["status"] == "finished" and record["evaluations"] == 8 and record["generations"] == 2
    assert record["best"] == local["best"]
    assert _history_without_time(tmp_path / name) == _history_without_time(tmp_path / "local")
    assert SoftPrompt.load(tmp_path / name).embeddings.equal(SoftPrompt.load(tmp_path / "local").embeddings)


def test_align_split_over_two_actors_equals_local(tmp_path, executor, tiny_model_dir, one_thread):
    noting = _Noting(executor)
    record = align(_align_config(tiny_model_dir), tmp_path / "ray", session=Session(_measure(tiny_model_dir)),
                   executor=noting)
    assert record["executor"] == {"kind": "ray", "actors": 2, "gpus_per_actor": 0, "max_retries": 2}
    assert len(noting.actors) == 4 and len(set(noting.actors[:2])) == 2  # 2 generations x one chunk per actor
    _same_run(tmp_path, "ray", tiny_model_dir, record)


def test_align_survives_an_actor_killed_mid_population(tmp_path, executor, tiny_model_dir, one_thread):
    marker = tmp_path / "died"
    record = align(_align_config(tiny_model_dir), tmp_path / "ray", session=Session(_measure(tiny_model_dir)),
                   executor=_Noting(executor, die_once=marker))
    assert marker.is_file()  # an actor died scoring its first chunk; restarted, it scored it again
    _same_run(tmp_path, "ray", tiny_model_dir, record)
