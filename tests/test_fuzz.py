"""Property-based fuzzing (Hypothesis) of every reader of user files.

Readers: questionnaire JSON (``Questionnaire.load``), item means (``read_means``, JSON and CSV), constants files
(``constants.from_file``), soft-prompt files (``SoftPrompt.load``: random bytes, hand-made safetensors headers and
valid safetensors files with the wrong tensors, shapes, dtypes or metadata), run folders (``runs.load_run``) and
experiment folders (``experiment.read_config``: experiment.json, then the plan it gives; ``read_results``:
results.json against the plan; ``read_run``: a unit's run.json).

The property: a reader returns something valid or raises :class:`CultureAlignError`; any other exception fails the
test. Valid inputs (also generated) must still load, with the values that were written. The runs are derandomised
(the same inputs in every CI run) and together try at least ``MIN_TOTAL`` inputs, which the last test checks.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import struct
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from culturealign import constants as consts
from culturealign.config import AlignConfig, MeasureConfig, SoftPromptConfig
from culturealign.errors import CultureAlignError
from culturealign.experiment import ExperimentConfig, plan, read_config, read_results, read_run, summarise
from culturealign.instrument import DIMENSIONS, N_ITEMS, Questionnaire, read_means
from culturealign.runs import load_run
from culturealign.softprompt import SoftPrompt
from culturealign.targets import lookup

MIN_TOTAL = 10_000
EXAMPLES = Counter()  # inputs tried per test


def fuzz(n: int):
    """Hypothesis settings for ``n`` reproducible examples, no deadline (a shared CI machine), no database."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A scratch folder, in memory (/dev/shm) where there is one: the readers are what is tested, and rewriting a file
    on a journaled disk costs milliseconds, more than the reader."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="culturealign-fuzz-", dir=shm))
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("fuzz")


def write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


def expect_clean(fn, *args):
    """``fn(*args)``, or None when it raised CultureAlignError; any other exception propagates (a failure)."""
    try:
        return fn(*args)
    except CultureAlignError as exc:
        assert str(exc).strip(), "an error needs a message"
        return None


# ---- JSON building blocks -------------------------------------------------------------------------------------------
NASTY = [None, True, False, 0, -1, 1, 3, 5, 24, 25, 2.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf"),
         10 ** 400, -(10 ** 30), "", " ", "x", "3", "3.5", "nan", "PDI", "lto", "m01", "prefix", "naive", "anchored",
         "China", "agreement", [], {}, [1], [[3.0]], {"a": 1}]
# deep copies: a shared [] or {} edited by ``mutated`` would leak into later inputs (and can contain itself)
leaves = st.one_of(st.sampled_from(NASTY).map(copy.deepcopy), st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-30, 30), st.text(max_size=4))
json_values = st.recursive(leaves, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                          st.dictionaries(st.text(max_size=4), kids, max_size=3)),
                           max_leaves=4)
#: up to two (position, value) edits that spoil a list of good values
edits = st.lists(st.tuples(st.integers(0, 40), json_values), max_size=2)


def spoil(values: list, changes) -> list:
    values = list(values)
    for pos, value in changes:
        if values:
            values[pos % len(values)] = value
    return values


def good_floats(seed: int, n: int, low: float, high: float) -> list[float]:
    """``n`` ordinary values drawn from ``seed`` (cheaper than drawing each through Hypothesis)."""
    return [float(x) for x in np.random.default_rng(seed).uniform(low, high, n)]


def dumps(value) -> str:
    return json.dumps(value, allow_nan=True)


def mutated(base: dict, max_depth: int = 5):
    """``base`` with one to three random edits somewhere in its tree: a value replaced (by any JSON value or one of
    another type), a key or list entry deleted, or a key added."""
    return _mutated(json.dumps(base), max_depth)


@st.composite
def _mutated(draw, base: str, max_depth: int):
    doc = json.loads(base)
    for _ in range(draw(st.integers(1, 3))):
        parent, key, node = None, None, doc
        for _ in range(draw(st.integers(0, max_depth))):
            if isinstance(node, dict) and node:
                k = draw(st.sampled_from(sorted(node)))
            elif isinstance(node, list) and node:
                k = draw(st.integers(0, len(node) - 1))
            else:
                break
            parent, key, node = node, k, node[k]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if parent is None:
            if op == "replace":
                doc = draw(json_values)
            continue
        if op == "replace":
            parent[key] = draw(json_values)
        elif op == "delete":
            del parent[key]
        elif isinstance(node, dict):
            node[draw(st.text(max_size=6))] = draw(json_values)
        elif isinstance(node, list):
            node.append(draw(json_values))
        else:
            parent[key] = [node, draw(json_values)]  # a scalar turned into a list
    return doc


# ---- questionnaire ----------------------------------------------------------------------------------------------------
BUILTIN = Questionnaire.builtin()


def _check_questionnaire(q: Questionnaire | None) -> None:
    # a mutated file that loads is a valid instrument: items 1..n, five options each, formulas for its dimensions
    if q is None:
        return
    assert [i.id for i in q.items] == list(range(1, q.n_items + 1)) and q.n_items >= 1
    assert all(len(i.options) == 5 and isinstance(i.text, str) for i in q.items)
    assert q.dimensions and list(q.formulas) == list(q.dimensions)
    assert q.weight_matrix().shape == (len(q.dimensions), q.n_items) and np.isfinite(q.weight_matrix()).all()
    expect_clean(q.with_mas_weight, 25)  # the CLI does this with --cat-mas-weight: works, or one clear error


@fuzz(2500)
@given(doc=mutated(BUILTIN.raw))
def test_fuzz_questionnaire_mutations(folder, doc):
    EXAMPLES["questionnaire"] += 1
    _check_questionnaire(expect_clean(Questionnaire.load, write(folder / "q.json", dumps(doc))))


@fuzz(400)
@given(content=st.one_of(st.binary(max_size=64), st.text(max_size=64), json_values.map(dumps)))
def test_fuzz_questionnaire_random_files(folder, content):
    EXAMPLES["questionnaire-random"] += 1
    _check_questionnaire(expect_clean(Questionnaire.load, write(folder / "q.json", content)))


@fuzz(100)
@given(order=st.permutations(range(N_ITEMS)), texts=st.lists(st.text(min_size=1, max_size=20).filter(str.strip),
                                                              min_size=N_ITEMS, max_size=N_ITEMS))
def test_valid_questionnaires_still_load(folder, order, texts):
    EXAMPLES["questionnaire-valid"] += 1
    doc = copy.deepcopy(BUILTIN.raw)
    doc["items"] = [doc["items"][i] | {"text": texts[i]} for i in order]
    q = Questionnaire.load(write(folder / "q.json", dumps(doc)))
    assert [i.text for i in q.items] == texts
    np.testing.assert_array_equal(q.weight_matrix(), BUILTIN.weight_matrix())


# ---- item means -------------------------------------------------------------------------------------------------------
def _check_means(means) -> None:
    if means is not None:
        assert means.shape == (N_ITEMS,) and np.isfinite(means).all() and means.min() >= 1 and means.max() <= 5


@st.composite
def means_json(draw):
    form = draw(st.sampled_from(["list", "list", "keyed", "keyed", "wrapped", "other"]))
    if form == "other":
        return draw(json_values)
    values = spoil(good_floats(draw(st.integers(0, 2 ** 16)), draw(st.integers(22, 26)), 0.5, 5.5), draw(edits))
    if form == "list":
        return values
    if form == "wrapped":
        return {"means": values}
    style = draw(st.sampled_from(["{}", "m{:02d}", "M{}", " {} "]))
    keys = spoil([style.format(i + 1) for i in range(len(values))], draw(edits))
    return {str(k): v for k, v in zip(keys, values)}


@fuzz(1500)
@given(doc=means_json())
def test_fuzz_means_json(folder, doc):
    EXAMPLES["means-json"] += 1
    _check_means(expect_clean(read_means, write(folder / "m.json", dumps(doc))))


csv_junk = st.one_of(st.sampled_from(["nan", "inf", "item", "", "m07", "1_0", "3,4", "0x1", "1e999", "\t", "\"3\""]),
                     st.text(alphabet=",.-+eE0123456789 mx\t", max_size=6), st.text(max_size=5))


@st.composite
def means_csv(draw) -> str:
    values = good_floats(draw(st.integers(0, 2 ** 16)), draw(st.integers(20, 26)), 0.5, 5.5)
    cells = spoil([repr(v) for v in values], draw(st.lists(st.tuples(st.integers(0, 40), csv_junk), max_size=2)))
    if draw(st.booleans()):
        text = ",".join(cells)  # one row of numbers
    else:
        items = spoil([str(i + 1) for i in range(len(cells))],
                      draw(st.lists(st.tuples(st.integers(0, 40), csv_junk), max_size=2)))
        text = "\n".join(f"{i},{c}" for i, c in zip(items, cells))
    if draw(st.booleans()):
        text = "item,mean\n" + text
    return text


@fuzz(1500)
@given(text=means_csv(), tail=st.one_of(st.just(b""), st.binary(max_size=4)))
def test_fuzz_means_csv(folder, text, tail):
    EXAMPLES["means-csv"] += 1
    _check_means(expect_clean(read_means, write(folder / "m.csv", text.encode("utf-8", "surrogatepass") + tail)))


@fuzz(200)
@given(values=st.lists(st.floats(1, 5), min_size=N_ITEMS, max_size=N_ITEMS), form=st.sampled_from(["list", "keyed", "csv", "row"]))
def test_valid_means_still_load(folder, values, form):
    EXAMPLES["means-valid"] += 1
    if form in ("list", "keyed"):
        doc = values if form == "list" else {f"m{i + 1:02d}": v for i, v in enumerate(values)}
        path = write(folder / "ok.json", dumps(doc))
    else:
        text = (",".join(map(repr, values)) if form == "row"
                else "item,mean\n" + "\n".join(f"{i + 1},{v!r}" for i, v in enumerate(values)))
        path = write(folder / "ok.csv", text)
    np.testing.assert_array_equal(read_means(path), values)


# ---- constants --------------------------------------------------------------------------------------------------------
@st.composite
def constants_docs(draw):
    form = draw(st.sampled_from(["list", "keyed", "values", "other"]))
    if form == "other":
        return draw(json_values)
    values = spoil(good_floats(draw(st.integers(0, 2 ** 16)), draw(st.integers(5, 7)), -100, 100), draw(edits))
    if form == "list":
        return values
    keys = spoil([*DIMENSIONS, "extra"], draw(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(
        ["pdi", "values", "kind", "", "IDV"])), max_size=1)))
    doc = dict(zip(keys, values))
    return doc if form == "keyed" else {"kind": "anchored", "values": doc}


@fuzz(1500)
@given(doc=constants_docs())
def test_fuzz_constants_files(folder, doc):
    EXAMPLES["constants"] += 1
    c = expect_clean(consts.from_file, write(folder / "c.json", dumps(doc)))
    if c is not None:
        assert c.values.shape == (6,) and np.isfinite(c.values).all()


@fuzz(100)
@given(values=st.lists(st.floats(-1e6, 1e6), min_size=6, max_size=6), keyed=st.booleans())
def test_valid_constants_still_load(folder, values, keyed):
    EXAMPLES["constants-valid"] += 1
    doc = dict(zip(DIMENSIONS, values)) if keyed else values
    np.testing.assert_array_equal(consts.from_file(write(folder / "ok.json", dumps(doc))).values, values)


# ---- soft prompts -----------------------------------------------------------------------------------------------------
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int8,
          torch.uint8, torch.bool]
tensors = st.builds(
    lambda dtype, shape, fill: (torch.full(shape, fill) if dtype.is_floating_point else torch.zeros(shape)).to(dtype),
    st.sampled_from(DTYPES), st.lists(st.integers(0, 4), max_size=3).map(tuple),
    st.sampled_from([0.5, -2.0, 0.0, float("nan"), float("inf")]))
metadata = st.one_of(st.none(), st.dictionaries(
    st.sampled_from(["placement", "prompt", "model", "country", "loss", "format", "x"]),
    st.one_of(st.sampled_from(["prefix", "suffix", "naive", "icl", "sideways", "123", "null", "[1, 2]", "{}", ""]),
              st.text(max_size=6)), max_size=5))


def _check_prompt(sp: SoftPrompt | None) -> None:
    if sp is not None:
        assert sp.embeddings.dim() == 2 and sp.embeddings.dtype == torch.float32 and min(sp.embeddings.shape) >= 1
        assert torch.isfinite(sp.embeddings).all() and sp.placement in ("prefix", "suffix")
        assert sp.metadata.get("prompt", "naive") in ("naive", "persona", "icl")


@fuzz(1200)
@given(named=st.dictionaries(st.sampled_from(["embeddings", "prompt_embeddings", "emb", "x"]), tensors, max_size=3),
       meta=metadata)
def test_fuzz_soft_prompt_tensors(folder, named, meta):
    EXAMPLES["soft-prompt-tensors"] += 1
    path = write(folder / "sp.safetensors", save({k: t.contiguous() for k, t in named.items()}, metadata=meta))
    _check_prompt(expect_clean(SoftPrompt.load, path))


header_entries = st.fixed_dictionaries({}, optional={
    "dtype": st.one_of(st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "F4", "C64",
                                        "X"]), json_values),
    "shape": st.one_of(st.lists(st.integers(-1, 6), max_size=3), json_values),
    "data_offsets": st.one_of(st.lists(st.integers(-4, 200), min_size=2, max_size=2), json_values)})


@fuzz(1200)
@given(header=st.dictionaries(st.sampled_from(["embeddings", "__metadata__", "y"]),
                              st.one_of(header_entries, json_values), max_size=3),
       length_delta=st.sampled_from([0, 0, 0, -1, 1, 10 ** 6]), data=st.binary(max_size=200))
def test_fuzz_soft_prompt_headers(folder, header, length_delta, data):
    EXAMPLES["soft-prompt-headers"] += 1
    raw = dumps(header).encode()
    length = max(0, len(raw) + length_delta)
    path = write(folder / "sp.safetensors", struct.pack("<Q", length) + raw + data)
    _check_prompt(expect_clean(SoftPrompt.load, path))


VALID_FILE = save({"embeddings": torch.randn(3, 8)}, metadata={"placement": "suffix", "prompt": "icl", "model": "m"})


@fuzz(600)
@given(content=st.one_of(st.binary(max_size=80),
                         st.tuples(st.integers(0, len(VALID_FILE) - 1), st.binary(min_size=1, max_size=8)).map(
                             lambda t: VALID_FILE[:t[0]] + t[1] + VALID_FILE[t[0] + len(t[1]):]),
                         st.integers(0, len(VALID_FILE) - 1).map(lambda n: VALID_FILE[:n])))
def test_fuzz_soft_prompt_bytes(folder, content):
    EXAMPLES["soft-prompt-bytes"] += 1
    _check_prompt(expect_clean(SoftPrompt.load, write(folder / "sp.safetensors", content)))


@fuzz(50)
@given(n_tokens=st.integers(1, 5), hidden=st.integers(1, 16), placement=st.sampled_from(["prefix", "suffix"]),
       style=st.sampled_from(["naive", "persona", "icl"]), model=st.sampled_from(["default", "123", "null", "a/b"]))
def test_valid_soft_prompts_still_load(folder, n_tokens, hidden, placement, style, model):
    EXAMPLES["soft-prompt-valid"] += 1
    emb = torch.randn(n_tokens, hidden, generator=torch.Generator().manual_seed(n_tokens * hidden))
    sp_dir = folder / "valid-prompt"
    SoftPrompt(emb, placement, {"prompt": style, "model": model, "loss": 1.5}).save(sp_dir)
    loaded = SoftPrompt.load(sp_dir, expected_hidden_size=hidden)
    torch.testing.assert_close(loaded.embeddings, emb, rtol=0, atol=0)
    assert (loaded.placement, loaded.metadata["prompt"], loaded.metadata["model"]) == (placement, style, model)
    assert loaded.metadata["loss"] == 1.5


# ---- run folders --------------------------------------------------------------------------------------------------------
def _valid_record() -> dict:
    config = AlignConfig(country="China", soft=SoftPromptConfig(), measure=MeasureConfig(dimensions=["PDI", "IDV"]))
    country = lookup("China")
    best = {d: {"model": 50.0, "target": country.scores[d], "abs_diff": abs(50.0 - country.scores[d])}
            for d in DIMENSIONS}
    return {"status": "finished", "config": config.to_dict(), "seed": 0, "country": country.to_dict(),
            "loss_dimensions": ["PDI", "IDV"], "constants": {"kind": "zero", "values": dict.fromkeys(DIMENSIONS, 0.0)},
            "best": {"loss": 12.5, "indices": best}, "evaluations": 16, "generations": 1, "search_dim": 64,
            "wall_time_s": 1.0, "reference_mean_loss": 100.0}


RUN = _valid_record()


@fuzz(1500)
@given(doc=mutated(RUN, max_depth=3))
def test_fuzz_run_json(folder, doc):
    EXAMPLES["run-json"] += 1
    run_dir = folder / "run"
    run_dir.mkdir(exist_ok=True)
    write(run_dir / "run.json", dumps(doc))
    loaded = expect_clean(load_run, run_dir)
    if loaded is not None:
        record, config = loaded
        assert isinstance(record, dict) and isinstance(config, AlignConfig)
        assert isinstance(config.measure, MeasureConfig) and isinstance(config.soft, SoftPromptConfig)
        assert all(math.isfinite(record["constants"]["values"][d]) for d in DIMENSIONS)


@fuzz(200)
@given(content=st.one_of(st.binary(max_size=40), st.text(max_size=40), json_values.map(dumps)))
def test_fuzz_run_json_random_files(folder, content):
    EXAMPLES["run-json-random"] += 1
    run_dir = folder / "run-random"
    run_dir.mkdir(exist_ok=True)
    write(run_dir / "run.json", content)
    loaded = expect_clean(load_run, run_dir)
    assert loaded is None or isinstance(loaded[1], AlignConfig)


def test_valid_run_still_loads(folder):
    run_dir = folder / "valid-run"
    run_dir.mkdir()
    write(run_dir / "run.json", dumps(RUN))
    record, config = load_run(run_dir)
    assert record == RUN and config.to_dict() == RUN["config"]
    assert config.measure.dimensions == ["PDI", "IDV"]


# ---- experiment folders -----------------------------------------------------------------------------------------------
EXPERIMENT = ExperimentConfig(countries=["China", "India"], seeds=2, align=AlignConfig(country=""),
                              evaluations={"culturalbench": 5})
UNITS = plan(EXPERIMENT)
EXPERIMENT_RECORD = {"config": EXPERIMENT.to_dict(), "countries": EXPERIMENT.countries,
                     "seeds": list(range(EXPERIMENT.seeds))}
RESULTS = {"targets": {"China": lookup("China").to_dict()}, "wall_time_s": 12.5,
           "rows": [{"country": u.country, "method": u.method, "seed": u.seed, "loss": 10.0 + i,
                     "indices": dict.fromkeys(DIMENSIONS, 50.0),
                     "culturalbench": None if u.method == "reference mean" else {"question_accuracy": 0.2}}
                    for i, u in enumerate(UNITS)]}
SOFT_UNIT = next(u for u in UNITS if u.method == "soft prompt" and u.country == "China" and u.seed == 0)


def _experiment_folder(folder: Path, name: str, content: bytes | str) -> Path:
    out = folder / name
    out.mkdir(exist_ok=True)
    write(out / "experiment.json", content)
    return out


def _check_experiment_config(out: Path) -> None:
    """What ``experiment --resume`` does with the folder's experiment.json: read it, then plan its units."""
    config = expect_clean(read_config, out)
    if config is not None:
        assert isinstance(config, ExperimentConfig) and isinstance(config.align, AlignConfig)
        assert all(isinstance(c, str) for c in config.countries) and config.seeds >= 0
        units = expect_clean(plan, config)
        assert units is None or len(units) == len(config.countries) * (4 + config.seeds)


@fuzz(700)
@given(doc=mutated(EXPERIMENT_RECORD, max_depth=4))
def test_fuzz_experiment_config(folder, doc):
    EXAMPLES["experiment-config"] += 1
    _check_experiment_config(_experiment_folder(folder, "exp-config", dumps(doc)))


@fuzz(200)
@given(content=st.one_of(st.binary(max_size=40), st.text(max_size=40), json_values.map(dumps)))
def test_fuzz_experiment_config_random_files(folder, content):
    EXAMPLES["experiment-config-random"] += 1
    _check_experiment_config(_experiment_folder(folder, "exp-config-random", content))


@fuzz(700)
@given(doc=mutated(RESULTS, max_depth=4))
def test_fuzz_experiment_results(folder, doc):
    EXAMPLES["experiment-results"] += 1
    data = expect_clean(read_results, write(folder / "results.json", dumps(doc)), UNITS)
    if data is not None:
        keys = [(r["country"], r["method"], r["seed"]) for r in data["rows"]]
        assert len(set(keys)) == len(keys) and set(keys) <= {u.key for u in UNITS}
        expect_clean(summarise, data["rows"])     # what resuming does with the rows


@fuzz(200)
@given(content=st.one_of(st.binary(max_size=40), st.text(max_size=40), json_values.map(dumps)))
def test_fuzz_experiment_results_random_files(folder, content):
    EXAMPLES["experiment-results-random"] += 1
    data = expect_clean(read_results, write(folder / "results.json", content), UNITS)
    assert data is None or isinstance(data["rows"], list)


UNIT_RUN = RUN | {"config": RUN["config"] | {"country": SOFT_UNIT.country, "seed": SOFT_UNIT.seed}}


@fuzz(700)
@given(doc=mutated(UNIT_RUN, max_depth=3))
def test_fuzz_experiment_unit_run_json(folder, doc):
    EXAMPLES["experiment-run-json"] += 1
    run_dir = folder / "unit-run"
    run_dir.mkdir(exist_ok=True)
    write(run_dir / "run.json", dumps(doc))
    run = expect_clean(read_run, run_dir, SOFT_UNIT)
    if run is not None and run["status"] == "finished":   # what run_unit reads from a finished run
        assert float(run["best"]["loss"]) == run["best"]["loss"] or math.isnan(run["best"]["loss"])
        assert all(isinstance(float(run["best"]["indices"][d]["model"]), float) for d in DIMENSIONS)


def test_valid_experiment_folder_still_reads(folder):
    out = _experiment_folder(folder, "valid-experiment", dumps(EXPERIMENT_RECORD))
    config = read_config(out)
    assert config.to_dict() == EXPERIMENT.to_dict() and [u.key for u in plan(config)] == [u.key for u in UNITS]
    assert read_results(write(out / "results.json", dumps(RESULTS)), UNITS) == RESULTS
    run_dir = SOFT_UNIT.run_dir(out)
    run_dir.mkdir(parents=True)
    write(run_dir / "run.json", dumps(UNIT_RUN))
    assert read_run(run_dir, SOFT_UNIT) == UNIT_RUN
    other = next(u for u in UNITS if u.method == "soft prompt" and u.seed == 1)
    with pytest.raises(CultureAlignError, match="is the run of 'China', seed 0"):
        read_run(run_dir, other)              # another unit's run folder


def test_zz_fuzzed_at_least_ten_thousand_inputs():
    """Runs last (file order): the whole module together tried at least MIN_TOTAL inputs."""
    fuzzers = [name[len("test_"):] for name in globals() if name.startswith(("test_fuzz_", "test_valid_"))]
    if len(EXAMPLES) < len(fuzzers) - 2:  # test_valid_run_still_loads and ..._folder_still_reads are plain
        pytest.skip("only part of the fuzz module ran")
    assert sum(EXAMPLES.values()) >= MIN_TOTAL, EXAMPLES
