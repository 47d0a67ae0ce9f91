"""Instruments as data: a second questionnaire is one file (items, scales, blocks, indices with terms, optionally
its own targets) and one registering line, measured and aligned with no change to the library."""
import copy
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from culturealign import constants as consts
from culturealign.config import AlignConfig
from culturealign.align import align
from culturealign.cli import app
from culturealign.config import MeasureConfig, SoftPromptConfig
from culturealign.errors import CultureAlignError
from culturealign.instrument import DIMENSIONS, INSTRUMENTS, N_ITEMS, Questionnaire, register_instrument
from culturealign.session import Session
from culturealign.models import LoadedModel
from culturealign.prompts import system_message
from culturealign.runs import load_run
from culturealign.targets import lookup, targets_for

runner = CliRunner()
DIMS = ("Harmony", "Thrift", "Zeal")
TOY = {
    "instrument": "A toy instrument (tests only)",
    "scales": {"agree": ["strongly agree", "agree", "neither", "disagree", "strongly disagree"]},
    "blocks": {"statements": {"intro": "How much do you agree?", "scale": "agree"}},
    "items": [{"id": i, "block": "statements", "text": text} for i, text in enumerate(
        ["Family comes first.", "Rules are made to be broken.", "Saving money matters.", "Spend it while you can.",
         "Work hard every day.", "Rest is more important than work."], 1)],
    "indices": {"Harmony": {"name": "Harmony", "description": "how much people value getting along",
                            "terms": [[30, 1, 2]]},
                "Thrift": {"name": "Thrift", "terms": [[40, 3, 4]]},
                "Zeal": {"name": "Zeal", "terms": [[25, 5, 6], [10, 1, 6]]}},
    "targets": {"China": {"Harmony": 60, "Thrift": 20, "Zeal": -5},
                "U.S.A.": {"Harmony": 10, "Thrift": 50, "Zeal": 30},
                "Atlantis": {"Harmony": 90, "Thrift": 0}},
}


def _write(tmp_path, doc, name="toy.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def toy(tmp_path):
    """The toy instrument's file, registered as "toy" for the test (the one line a user writes)."""
    path = _write(tmp_path, TOY)
    register_instrument("toy", path)
    yield path
    INSTRUMENTS.pop("toy")


def _session(tiny_model, tiny_tokenizer, **config):
    return Session(MeasureConfig(**{"model": "tiny", "constants": "zero", "order": "forward", **config}),
                   lm=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))


def test_the_instrument_carries_its_shape_and_targets(toy):
    q = Questionnaire.load("toy")
    assert q.dimensions == DIMS and q.n_items == 6 and q.source == "instrument:toy"
    assert Questionnaire.load(str(toy)).weight_matrix().tolist() == q.weight_matrix().tolist()
    assert q.weight_matrix().shape == (3, 6)
    means = np.full((2, 6), 3.0)
    means[0, 0] = 4.0                                     # item 1: Harmony +30, Zeal +10
    assert q.indices(means, [1, 2, 3]).tolist() == [[31.0, 2.0, 13.0], [1.0, 2.0, 3.0]]
    with pytest.raises(CultureAlignError, match=r"need 3 constants \(Harmony, Thrift, Zeal\)"):
        q.indices(means, np.zeros(6))
    targets = targets_for("toy")
    china = targets.lookup("CN")                          # Hofstede's codes and names find a known country
    assert china.name == "China" and china.code == "CHI" and china.vector(DIMS).tolist() == [60, 20, -5]
    assert targets.lookup("usa").name == "U.S.A." and targets.lookup("atlantis").dimensions == ["Harmony", "Thrift"]
    assert [c.name for c in targets.select("all")] == ["China", "U.S.A."]     # Atlantis lacks Zeal
    with pytest.raises(CultureAlignError, match="Atlantis has no published score for Zeal"):
        targets.select("Atlantis")
    assert targets.check([targets.lookup("Atlantis")], "harmony,THRIFT") == ["Harmony", "Thrift"]
    with pytest.raises(CultureAlignError, match=r"unknown country 'Germany'.*targets section of instrument:toy"):
        targets.lookup("Germany")
    assert MeasureConfig(questionnaire="toy", dimensions="zeal, harmony").dimensions == ["Harmony", "Zeal"]
    with pytest.raises(CultureAlignError, match=r"unknown dimension\(s\) \['PDI'\].*Harmony,Thrift,Zeal"):
        MeasureConfig(questionnaire="toy", dimensions="PDI")


def test_measure_and_align_an_instrument_end_to_end(tmp_path, toy, tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer, questionnaire="toy", order="both")
    china = session.targets.lookup("China")
    answers = session.answers("naive", china)
    assert answers.probs.shape == (1, 6, 5) and answers.expected.shape == (1, 6)
    objective = session.objective(china)
    indices = objective.indices(answers.expected)
    assert indices.shape == (1, 3)
    assert objective.loss(answers.expected)[0] == pytest.approx(np.abs(indices[0] - [60, 20, -5]).sum())
    record = session.measure(china, "icl")
    assert list(record["indices"]) == list(DIMS) and [i["item"] for i in record["items"]] == list(range(1, 7))
    assert record["constants"]["values"] == dict.fromkeys(DIMS, 0.0)
    icl = system_message("icl", china, session.questionnaire)
    assert "the survey's dimensions" in icl and "Hofstede" not in icl
    assert "- Harmony (Harmony): 60. It measures how much people value getting along.\n- Thrift (Thrift): 20.\n" in icl

    # alignment: two Adam steps, then one black-box generation, on the same instrument
    config = MeasureConfig(model="tiny", questionnaire="toy", constants="zero", order="both")
    soft = SoftPromptConfig(n_tokens=2, placement="suffix")
    run = align(AlignConfig(country="CN", optimizer="adam", steps=2, soft=soft, measure=config), tmp_path / "adam",
                session=session)
    assert run["status"] == "finished" and run["generations"] == 2
    assert list(run["best"]["indices"]) == list(DIMS) and list(run["constants"]["values"]) == list(DIMS)
    assert run["best"]["indices"]["Zeal"]["target"] == -5 and run["loss_dimensions"] == list(DIMS)
    header = (tmp_path / "adam" / "history.csv").read_text().splitlines()[0].split(",")
    assert {"best_Harmony", "best_Thrift", "best_Zeal"} <= set(header) and "best_PDI" not in header
    record, saved = load_run(tmp_path / "adam")          # run.json is checked against the toy's dimensions
    assert saved.measure.questionnaire == "toy" and record["best"]["loss"] == run["best"]["loss"]
    box = align(AlignConfig(country="U.S.A.", optimizer="cma", popsize=4, budget=4,
                            soft=SoftPromptConfig(n_tokens=2, placement="suffix", subspace_dim=4), measure=config),
                tmp_path / "cma", session=session)
    assert box["generations"] == 1 and list(box["best"]["indices"]) == list(DIMS)
    assert box["best"]["loss"] == pytest.approx(sum(v["abs_diff"] for v in box["best"]["indices"].values()))


def test_anchored_constants_use_the_reference_countries_the_targets_have(toy, tiny_model, tiny_tokenizer):
    session = _session(tiny_model, tiny_tokenizer, questionnaire="toy", constants="anchored")
    fit = session.resolve_constants()
    assert fit.kind == "anchored" and fit.values.shape == (3,) and fit.dimensions == DIMS
    assert fit.details["references"] == ["U.S.A.", "China"]      # of the eight, the two the toy has scores for
    raw = {c: np.array([fit.details["raw_indices"][c][d] for d in DIMS]) for c in ("U.S.A.", "China")}
    np.testing.assert_allclose(fit.values, np.mean([[10, 50, 30] - raw["U.S.A."], [60, 20, -5] - raw["China"]], 0))
    own = session.constants_for(session.targets.lookup("China"))   # China is left out of its own constants
    assert own.details["references"] == ["U.S.A."] and own.details["left_out"] == "China"
    np.testing.assert_allclose(own.values, [10, 50, 30] - raw["U.S.A."])
    lonely = copy.deepcopy(TOY) | {"targets": {"Atlantis": {"Harmony": 1, "Thrift": 2, "Zeal": 3}}}
    register_instrument("toy", _write(toy.parent, lonely, "lonely.json"))
    with pytest.raises(CultureAlignError, match="anchored constants need reference countries.*--constants zero"):
        _session(tiny_model, tiny_tokenizer, questionnaire="toy", constants="anchored").resolve_constants()


def test_constants_and_means_files_have_the_instruments_size(tmp_path, toy):
    (tmp_path / "m.json").write_text(json.dumps([4.0, 3, 3, 3, 3, 3]))
    (tmp_path / "c.json").write_text(json.dumps({"Harmony": 5, "Thrift": 0, "Zeal": -1}))
    res = runner.invoke(app, ["indices", "--means", str(tmp_path / "m.json"), "--questionnaire", "toy",
                              "--constants", str(tmp_path / "c.json"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["indices"] == {"Harmony": 35.0, "Thrift": 0.0, "Zeal": 9.0}
    assert consts.from_file(tmp_path / "c.json", DIMS).to_dict()["values"] == {"Harmony": 5, "Thrift": 0, "Zeal": -1}
    (tmp_path / "six.json").write_text(json.dumps([0] * 6))
    with pytest.raises(CultureAlignError, match=r"need 3 numbers, got 6\. Give 3 finite numbers \(Harmony, Thrift"):
        consts.from_file(tmp_path / "six.json", DIMS)
    res = runner.invoke(app, ["indices", "--means", str(tmp_path / "six.json"), "--questionnaire", "toy"])
    assert res.exit_code == 2 and "has 6 item means" not in res.output and "item means must lie in 1..5" in res.output
    (tmp_path / "m24.json").write_text(json.dumps([3.0] * 24))
    res = runner.invoke(app, ["indices", "--means", str(tmp_path / "m24.json"), "--questionnaire", "toy"])
    assert res.exit_code == 2 and "need exactly 6 (items 1..6)" in res.output
    res = runner.invoke(app, ["indices", "--means", str(tmp_path / "m.json"), "--questionnaire", "toy",
                              "--cat-mas-weight"])
    assert isinstance(res.exception, SystemExit) and res.exit_code == 2 and "has no index MAS" in res.output


def test_the_command_line_measures_aligns_and_reports_an_instrument(tmp_path, tiny_model_dir):
    path = _write(tmp_path, TOY)
    common = ["--model", str(tiny_model_dir), "--questionnaire", str(path), "--constants", "zero",
              "--order", "forward"]
    res = runner.invoke(app, ["measure", "--country", "CN", "--country", "US", *common, "--prompt", "persona"])
    assert res.exit_code == 0, res.output
    assert "Harmony Harmony" in res.output and "PDI" not in res.output and "Kendall" in res.output
    res = runner.invoke(app, ["align", "--country", "CN", "--out", str(tmp_path / "run"), "--steps", "1",
                              "--n-tokens", "2", *common])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["compare", str(tmp_path / "run"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0 and "Zeal" in res.output, res.output
    res = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "radar_China.png").is_file() and (tmp_path / "run" / "dimensions.png").is_file()
    res = runner.invoke(app, ["countries", "--questionnaire", str(path), "--json"])
    assert res.exit_code == 0 and [c["name"] for c in json.loads(res.output)] == ["China", "U.S.A.", "Atlantis"]


def test_an_instrument_without_targets_for_its_dimensions_says_what_to_add(tmp_path):
    path = _write(tmp_path, {k: v for k, v in TOY.items() if k != "targets"})
    with pytest.raises(CultureAlignError, match=r"no target scores for Harmony, Thrift, Zeal.*'targets' section"):
        targets_for(path)
    res = runner.invoke(app, ["measure", "--country", "CN", "--questionnaire", str(path)])  # before a model loads
    assert isinstance(res.exception, SystemExit) and res.exit_code == 2 and "'targets' section" in res.output


def test_a_vsm_file_without_lto_is_a_five_dimension_instrument(tmp_path):
    doc = copy.deepcopy(Questionnaire.builtin().raw)
    del doc["indices"]["LTO"]
    q = Questionnaire.load(_write(tmp_path, doc))
    five = ("PDI", "IDV", "MAS", "UAI", "IVR")
    assert q.dimensions == five and q.n_items == N_ITEMS and q.target_scores is None
    assert targets_for(q).check([lookup("CN")]) == list(five)      # Hofstede's published scores as targets
    assert q.with_mas_weight(25).formulas["MAS"][1][0] == 25


def test_the_builtin_is_the_registered_vsm2013():
    builtin, named = Questionnaire.builtin(), Questionnaire.load("vsm2013")
    assert builtin.dimensions == named.dimensions == DIMENSIONS and builtin.n_items == N_ITEMS
    assert builtin.source == named.source == "builtin:vsm2013-en" and builtin.raw == named.raw
    register_instrument("vsm-resource", resources.files("culturealign") / "data/vsm2013/vsm2013.json")
    try:
        assert Questionnaire.load("vsm-resource").weight_matrix().tolist() == builtin.weight_matrix().tolist()
    finally:
        INSTRUMENTS.pop("vsm-resource")
    with pytest.raises(CultureAlignError, match=r"questionnaire file nope does not exist \(nor is it a registered "
                                                r"instrument: vsm2013, vsm2013-reworded, vsm2013-test, "
                                                r"vsm2013-validation\)"):
        Questionnaire.load("nope")
    with pytest.raises(CultureAlignError, match="an instrument name must be a non-empty string"):
        register_instrument(" ", "x.json")


def _spoiled(change) -> dict:
    doc = copy.deepcopy(TOY)
    change(doc)
    return doc


MALFORMED = {
    "a gap in the items": (lambda d: d["items"].pop(2), "items [3] are missing"),
    "a term using an undefined item": (lambda d: d["indices"]["Thrift"]["terms"].append([5, 4, 9]),
                                       "items [7, 8, 9] are missing"),
    "a four-option scale": (lambda d: d["scales"]["agree"].pop(), "scale 'agree' has 4 options, needs 5"),
    "no indices": (lambda d: d.update(indices={}), "'indices' is missing or empty"),
    "a name with a space": (lambda d: d["indices"].update({"Har mony": d["indices"].pop("Harmony")}),
                            "index name 'Har mony' must be a letter followed by letters, digits or _"),
    "a dimension named loss": (lambda d: d["indices"].update(loss=d["indices"].pop("Zeal")), "and not 'loss'"),
    "names differing in case": (lambda d: d["indices"].update(zeal=d["indices"]["Zeal"]),
                                "indices Zeal and zeal differ only in case"),
    "a target on an unknown dimension": (lambda d: d["targets"]["China"].update(PDI=80),
                                         "target China: PDI not among the indices (Harmony, Thrift, Zeal)"),
    "a target that is not a number": (lambda d: d["targets"]["U.S.A."].update(Thrift="high"),
                                      "target U.S.A.: the scores of Thrift must be finite numbers"),
    "targets as a list": (lambda d: d.update(targets=[1, 2]), "'targets' must be an object of countries"),
}


@pytest.mark.parametrize("defect", list(MALFORMED))
def test_a_malformed_instrument_names_the_problem(tmp_path, defect):
    change, message = MALFORMED[defect]
    with pytest.raises(CultureAlignError, match="is malformed") as info:
        Questionnaire.load(_write(tmp_path, _spoiled(change)))
    assert message in str(info.value)
    res = runner.invoke(app, ["measure", "--country", "CN", "--questionnaire", str(tmp_path / "toy.json")])
    assert isinstance(res.exception, SystemExit) and res.exit_code == 2 and message in res.output


def test_every_problem_is_named_at_once_and_a_country_given_twice(tmp_path):
    def two(d):
        d["items"].pop(0)
        d["indices"]["Zeal"]["terms"][0][0] = "heavy"
    with pytest.raises(CultureAlignError, match=r"(?s)index Zeal: term \['heavy', 5, 6\].*items \[1\] are missing"):
        Questionnaire.load(_write(tmp_path, _spoiled(two)))
    twice = _spoiled(lambda d: d["targets"].update(CN={"Harmony": 1}))
    with pytest.raises(CultureAlignError, match="targets 'China' and 'CN' are the same country"):
        targets_for(_write(tmp_path, twice))
