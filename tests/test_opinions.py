"""Held-out WVS opinions: 1 - JSD, non-answers dropped, option order mapped back, the loader (JSON and the original
CSV, never eval), missing countries skipped, specificity and rank, the registry, the CLI and the report's figure."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from culturealign.backends.base import Backend, RowScores
from culturealign.cli import app
from culturealign.errors import CultureAlignError
from culturealign.evaluations import EVALUATIONS, NotCovered, get_evaluation, run_evaluation
from culturealign.models import LoadedModel
from culturealign.opinions import (COUNTRY_CODES, Opinion, Opinions, is_non_answer, load_opinions, opinion_metrics,
                                   opinion_rows, resolve_country, score_opinions, similarity, total_variation,
                                   with_data)
from culturealign.report import write_report
from culturealign.session import MeasureConfig, Session
from culturealign.softprompt import SoftPrompt
from culturealign.targets import lookup

runner = CliRunner()


def _invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


# ---- the metric -------------------------------------------------------------------------------------------------
def test_similarity_against_hand_computed_values():
    # 3 options with zeros: M = (1/4, 1/2, 1/4); KL(p||M) = KL(q||M) = 1/2 bit, so JSD = sqrt(1/2)
    assert similarity([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == pytest.approx(1 - math.sqrt(0.5))
    assert similarity([1, 0, 0], [0, 1, 0]) == pytest.approx(0.0, abs=1e-12)  # disjoint
    assert similarity([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(1.0)
    # 5 options: p all on the first, q uniform; M = (0.6, 0.1, 0.1, 0.1, 0.1)
    kl_p = math.log2(1 / 0.6)
    kl_q = 0.2 * math.log2(0.2 / 0.6) + 4 * 0.2 * math.log2(0.2 / 0.1)
    expected = 1 - math.sqrt((kl_p + kl_q) / 2)
    assert expected == pytest.approx(0.21898, abs=1e-5)
    assert similarity([1, 0, 0, 0, 0], [0.2] * 5) == pytest.approx(expected)
    # inputs are renormalised (shares that do not sum to 1 after rounding)
    assert similarity([2, 0, 0, 0, 0], [1] * 5) == pytest.approx(expected)
    assert total_variation([0.5, 0.5, 0], [0, 0.5, 0.5]) == pytest.approx(0.5)
    assert total_variation([1, 0, 0, 0, 0], [0.2] * 5) == pytest.approx(0.8)


# ---- non-answers --------------------------------------------------------------------------------------------------
def test_non_answers_are_dropped_and_the_rest_renormalised(tiny_tokenizer):
    o = Opinion("Should it be allowed?", ("Yes", "No", "Don't know", "No answer",
                                          "Other missing; Multiple answers Mail (EVS)"),
                {"Peru": (0.3, 0.5, 0.15, 0.05, 0.0), "Chile": (0.0, 0.0, 0.6, 0.4, 0.0)})
    assert o.answers == ("Yes", "No") and o.kept == [0, 1]
    assert o.shares("Peru") == pytest.approx([0.375, 0.625])
    assert o.shares("Chile") is None  # only non-answers: no data, not a zero distribution
    (row,) = opinion_rows(tiny_tokenizer, [o])
    assert "A. Yes\nB. No\n" in row.head and "Don't know" not in row.head and "from A to B" in row.head
    m = opinion_metrics([o], {"forward": [np.array([0.375, 0.625])], "reverse": [np.array([0.375, 0.625])]}, "Peru")
    assert m["similarity"] == pytest.approx(1.0) and m["per_country"]["Peru"]["n_questions"] == 1
    assert "Chile" not in m["per_country"] and "not offered to the model" in m["rules"]["non_answers"]


def test_which_options_are_non_answers():
    shipped = {opt for o in load_opinions() for opt in o.options if is_non_answer(opt)}
    assert shipped == {"Don't know", "No answer", "Other missing; Multiple answers Mail (EVS)",
                       "Missing; Not available", "Missing; Unknown"}
    assert not any(is_non_answer(o) for o in ("Hard to say", "Other answer", "Not mentioned", "None at all",
                                              "It is against democracy (spontaneous)"))


# ---- option order -------------------------------------------------------------------------------------------------
class _Fake(Backend):
    """A model whose preference is known: it puts ``weight`` on the label whose listed option is ``liked`` (or on the
    first label, ``liked=None``), the rest spread evenly."""

    name = "fake"

    def __init__(self, tokenizer, liked: str | None, weight: float = 0.7):
        self.tokenizer, self.liked, self.weight, self.model_id, self.hidden_size = tokenizer, liked, weight, "fake", 8

    def scorer(self, rows, labels, batch_size=None, max_memory_mb=None, **options):
        fake = self

        class Scorer:
            n_rows = len(rows)

            def score(self, soft_prompts=None, placement="prefix"):
                probs = np.full((1, len(rows), len(labels)), (1 - fake.weight) / (len(labels) - 1))
                for r, row in enumerate(rows):
                    k = 0 if fake.liked is None else next(i for i, label in enumerate(labels)
                                                          if f"\n{label}. {fake.liked}\n" in row.head)
                    probs[0, r, k] = fake.weight
                return RowScores(probs, np.full((1, len(rows)), np.nan))
        return Scorer()

    def embed(self, ids):
        raise NotImplementedError

    def embedding_matrix(self):
        raise NotImplementedError

    def generate(self, system, text, soft=None, **sampling):
        raise NotImplementedError

    def provenance(self):
        return {"backend": "fake"}


QUESTIONS = [Opinion("Which one?", ("Red", "Green", "Blue", "Don't know"), {"Peru": (0.1, 0.2, 0.6, 0.1)}),
             Opinion("Agree?", ("Agree", "Disagree", "No answer"), {"Peru": (0.5, 0.5, 0.0)})]


def test_reversed_order_maps_back_to_the_options(tiny_tokenizer):
    # a model that likes "Blue" wherever it is listed: both orders put 0.7 on Blue once mapped back
    by_order = score_opinions(_Fake(tiny_tokenizer, "Blue"), QUESTIONS[:1])
    assert by_order["forward"][0] == pytest.approx([0.15, 0.15, 0.7])
    assert by_order["reverse"][0] == pytest.approx([0.15, 0.15, 0.7])
    # a model that always answers "A": the first option forward, the last one reversed; averaged, they balance
    by_order = score_opinions(_Fake(tiny_tokenizer, None), QUESTIONS)
    assert by_order["forward"][0] == pytest.approx([0.7, 0.15, 0.15])
    assert by_order["reverse"][0] == pytest.approx([0.15, 0.15, 0.7])
    assert by_order["forward"][1] == pytest.approx([0.7, 0.3]) and by_order["reverse"][1] == pytest.approx([0.3, 0.7])
    m = opinion_metrics(QUESTIONS, by_order, "Peru")
    averaged = [np.array([0.425, 0.15, 0.425]), np.array([0.5, 0.5])]
    expected = np.mean([similarity(p, o.shares("Peru")) for p, o in zip(averaged, QUESTIONS)])
    assert m["similarity"] == pytest.approx(expected)  # the headline is on the order-averaged distribution
    assert m["similarity_forward"] == pytest.approx(np.mean([similarity([0.7, 0.15, 0.15], [1 / 9, 2 / 9, 6 / 9]),
                                                             similarity([0.7, 0.3], [0.5, 0.5])]))
    assert m["similarity_reverse"] > m["similarity_forward"]  # reversed, "A" is Blue, Peru's favourite
    assert "average of the two orders" in m["rules"]["orders"]


def test_rows_letter_each_questions_own_options(tiny_tokenizer):
    forward, reverse = (opinion_rows(tiny_tokenizer, QUESTIONS, "You are a person from Peru.", reverse=r)
                        for r in (False, True))
    assert "A. Red\nB. Green\nC. Blue\n\nAnswer with a single letter from A to C." in forward[0].head
    assert "A. Blue\nB. Green\nC. Red\n" in reverse[0].head and reverse[0].reversed
    assert "A. Agree\nB. Disagree\n\nAnswer with a single letter from A to B." in forward[1].head
    assert "You are a person from Peru." in forward[0].head


# ---- missing countries, specificity, rank, predictors -------------------------------------------------------------
def test_a_country_missing_from_a_question_is_skipped_not_zero():
    qs = [Opinion("q1", ("Yes", "No"), {"A": (0.8, 0.2), "B": (0.8, 0.2)}),
          Opinion("q2", ("Yes", "No"), {"A": (0.8, 0.2)})]
    model = [np.array([0.8, 0.2]), np.array([0.8, 0.2])]
    m = opinion_metrics(qs, {"forward": model, "reverse": model}, "B")
    assert m["per_country"]["B"]["n_questions"] == 1 and m["n_questions"] == 1
    assert m["similarity"] == pytest.approx(1.0)  # a zero distribution for q2 would have lowered it
    assert m["per_country"]["A"]["n_questions"] == 2


def test_specificity_rank_and_predictors():
    qs = [Opinion("q1", ("Yes", "No", "Don't know"), {"A": (0.9, 0.1, 0), "B": (0.5, 0.5, 0), "C": (0.1, 0.9, 0)}),
          Opinion("q2", ("Yes", "No", "Maybe"), {"A": (1, 0, 0), "B": (0.2, 0.4, 0.4), "C": (0.6, 0.2, 0.2)})]
    model = [np.array([0.5, 0.5]), np.array([0.2, 0.4, 0.4])]  # B's answers exactly
    m = opinion_metrics(qs, {"forward": model, "reverse": model}, "B")
    sims = {c: v["similarity"] for c, v in m["per_country"].items()}
    assert list(m["per_country"])[0] == "B" and [v["rank"] for v in m["per_country"].values()] == [1, 2, 3]
    assert sims["B"] == pytest.approx(1.0) and m["rank"] == 1 and m["closest"] == "B"
    assert m["specificity"] == pytest.approx(1.0 - (sims["A"] + sims["C"]) / 2)
    assert m["uniform_similarity"] == pytest.approx(np.mean([1.0, similarity([1 / 3] * 3, [0.2, 0.4, 0.4])]))
    others = [np.array([0.5, 0.5]), np.array([0.8, 0.1, 0.1])]  # the mean of A and C per question
    assert m["others_mean_similarity"] == pytest.approx(np.mean([similarity(p, o.shares("B"))
                                                                 for p, o in zip(others, qs)]))
    near = {c: np.mean([similarity(o.shares(c), o.shares("B")) for o in qs]) for c in "AC"}
    assert m["nearest_country"] == max(near, key=near.get)
    assert m["nearest_similarity"] == pytest.approx(max(near.values()))
    # a model that sounds like A: B drops in rank and its specificity turns negative
    a_like = [np.array([0.9, 0.1]), np.array([1.0, 0.0, 0.0])]
    m = opinion_metrics(qs, {"forward": a_like, "reverse": a_like}, "B")
    assert m["closest"] == "A" and m["rank"] > 1 and m["specificity"] < 0
    # no target: every country ranked, the headline is the closest one's similarity
    m = opinion_metrics(qs, {"forward": a_like, "reverse": a_like})
    assert m["target"] is None and m["similarity"] == pytest.approx(1.0) and m["closest"] == "A"


# ---- loading --------------------------------------------------------------------------------------------------------
def test_the_shipped_subset():
    items = load_opinions()
    assert len(items) == 37 and {o.source for o in items} == {"WVS"}
    assert all(2 <= len(o.answers) <= 11 for o in items)
    us = sum(o.shares("United States") is not None for o in items)
    cn = sum(o.shares("China") is not None for o in items)
    assert us == 37 and cn == 33
    assert all(abs(o.shares("Japan").sum() - 1) < 1e-9 for o in items)


@pytest.mark.parametrize("query, name", [("US", "United States"), ("U.S.A.", "United States"), ("CN", "China"),
                                         ("Great Britain", "Great Britain"), ("GB", "Great Britain"),
                                         ("Taiwan", "Taiwan ROC"), ("taiwan roc", "Taiwan ROC"),
                                         ("KR", "South Korea"), ("KE", "Kenya"), ("Lebanon", "Lebanon")])
def test_country_names(query, name):
    assert resolve_country(query, load_opinions()) == name


def test_dataset_names_map_to_the_package_lookup():
    shipped = {c for o in load_opinions() for c in o.selections}
    assert shipped <= set(COUNTRY_CODES)
    assert lookup(COUNTRY_CODES["United States"]).name == "U.S.A."
    assert lookup(COUNTRY_CODES["Taiwan ROC"]).name == "Taiwan"
    assert lookup(COUNTRY_CODES["Great Britain"]).name == "Great Britain"
    with pytest.raises(NotCovered, match="no answers from 'India'"):
        resolve_country("India", load_opinions())
    with pytest.raises(NotCovered, match="Saudi Arabia"):
        resolve_country("Saudi Arabia", load_opinions())


def _write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["question", "selections", "options", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _csv_row(o: Opinion) -> dict:
    # the original file's form: the repr of a defaultdict and of a list
    selections = defaultdict(list, {c: list(v) for c, v in o.selections.items()})
    return {"question": o.question, "selections": repr(selections), "options": repr(list(o.options)),
            "source": o.source}


def test_the_original_csv_reads_like_the_json(tmp_path):
    shipped = load_opinions()[:3]
    assert "defaultdict(<class 'list'>, {" in _csv_row(shipped[0])["selections"]
    path = _write_csv(tmp_path / "global_opinions.csv", [_csv_row(o) for o in shipped])
    assert load_opinions(path) == shipped
    json_path = tmp_path / "opinions.json"
    json_path.write_text(json.dumps([{"question": o.question, "options": list(o.options),
                                      "selections": {c: list(v) for c, v in o.selections.items()},
                                      "source": o.source} for o in shipped]))
    assert load_opinions(json_path) == shipped


@pytest.mark.parametrize("selections, why", [
    ("defaultdict(<class 'list'>, {'Peru': [0.5, 0.5}", "not a defaultdict or dict literal"),
    ("defaultdict(<class 'list'>, {'Peru': __import__('os').getcwd()})", "not a defaultdict or dict literal"),
    ("defaultdict(<class 'list'>, {'Peru': [0.5]})", "not 2 non-negative numbers"),
    ("[0.5, 0.5]", "not a dict"),
])
def test_a_malformed_row_is_one_clear_error_naming_it(tmp_path, selections, why):
    good = {"question": "Agree?", "selections": "defaultdict(<class 'list'>, {'Peru': [0.5, 0.5]})",
            "options": "['Agree', 'Disagree']", "source": "WVS"}
    path = _write_csv(tmp_path / "bad.csv", [good, {**good, "selections": selections}])
    with pytest.raises(CultureAlignError, match=f"bad.csv: row 2 is malformed: .*{why}"):
        load_opinions(path)


def test_other_unreadable_files(tmp_path):
    with pytest.raises(CultureAlignError, match="row 1 is malformed: 'options' is not a Python literal"):
        load_opinions(_write_csv(tmp_path / "a.csv", [{"question": "q", "selections": "{}", "options": "[oops"}]))
    (tmp_path / "b.csv").write_text("question,options\nq,\"['a', 'b']\"\n")
    with pytest.raises(CultureAlignError, match="no column selections"):
        load_opinions(tmp_path / "b.csv")
    with pytest.raises(CultureAlignError, match="cannot read opinions from"):
        load_opinions(tmp_path / "missing.json")
    (tmp_path / "c.json").write_text('{"question": "q"}')
    with pytest.raises(CultureAlignError, match="not a JSON list"):
        load_opinions(tmp_path / "c.json")


# ---- the evaluation -------------------------------------------------------------------------------------------------
def test_the_registry_lists_opinions():
    assert "opinions" in EVALUATIONS and sorted(EVALUATIONS)[:2] == ["culturalbench", "opinions"]
    evaluation = get_evaluation("opinions")
    assert isinstance(evaluation, Opinions) and evaluation.headline == "similarity"
    assert {"similarity", "specificity", "rank", "uniform_similarity", "others_mean_similarity",
            "nearest_similarity"} <= set(evaluation.columns)
    with pytest.raises(CultureAlignError, match="reads only its own items"):
        get_evaluation("culturalbench", data="x.csv")


def test_real_scoring_with_the_tiny_model(tiny_model, tiny_tokenizer, tmp_path):
    session = Session(MeasureConfig(batch_size=8), backend=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))
    m = run_evaluation("opinions", session, "CN", "persona", limit=4)
    assert m["target"] == "China" and m["n_questions"] == 4 and m["n_countries"] == 39
    assert 0 <= m["similarity"] <= 1 and 1 <= m["rank"] <= 39 and m["data"].startswith("GlobalOpinionQA")
    assert list(m["per_country"])[m["rank"] - 1] == "China"
    row = get_evaluation("opinions").row(m)
    assert row["similarity"] == m["similarity"] and len(row["by_country"]) == 39 and row["target"] == "China"
    hidden = tiny_model.get_input_embeddings().weight.shape[1]
    soft = SoftPrompt(torch.randn(3, hidden, generator=torch.Generator().manual_seed(0)) * 5, "suffix", {})
    with_soft = run_evaluation("opinions", session, "CN", "naive", soft, limit=4)
    assert with_soft["similarity"] != pytest.approx(m["similarity"])  # the soft prompt really reaches the model
    # the full dataset from a path, and registered under its own name
    path = _write_csv(tmp_path / "full.csv", [_csv_row(o) for o in load_opinions()[:2]])
    assert run_evaluation("opinions", session, "US", data=path)["n_questions"] == 2
    EVALUATIONS["opinions-full"] = with_data(path)
    try:
        assert run_evaluation("opinions-full", session, "US")["data"] == str(path)
    finally:
        del EVALUATIONS["opinions-full"]


def test_evaluate_opinions_cli(tiny_model_dir, tmp_path):
    res = _invoke("evaluate", "opinions", "--country", "CN", "--limit", "3", "--model", tiny_model_dir, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["target"] == "China" and out["n_questions"] == 3 and set(out["per_country"]) >= {"China", "Japan"}
    res = _invoke("evaluate", "opinions", "--country", "JP", "--limit", "2", "--prompt", "icl", "--all-countries",
                  "--model", tiny_model_dir)
    assert res.exit_code == 0, res.output
    assert "every country" in res.output and "Japan *" in res.output and "Argentina" in res.output
    res = _invoke("evaluate", "opinions", "--all-countries", "--limit", "1", "--model", tiny_model_dir)
    assert res.exit_code == 0 and "every country" in res.output, res.output
    res = _invoke("evaluate", "opinions", "--country", "IN", "--model", tiny_model_dir)
    assert res.exit_code == 2 and "no answers from 'IN'" in res.output
    bad = _write_csv(tmp_path / "bad.csv", [{"question": "q", "selections": "defaultdict(<class 'list'>, {",
                                             "options": "['a', 'b']"}])
    res = _invoke("evaluate", "opinions", "--country", "CN", "--data", bad, "--model", tiny_model_dir)
    assert res.exit_code == 2 and "row 1 is malformed" in res.output and res.output.count("error:") == 1


def test_the_report_draws_similarity_before_and_after(tmp_path):
    by_country = {"naive": {"United States": 0.6, "China": 0.5, "Japan": 0.55},
                  "soft prompt": {"United States": 0.58, "China": 0.62, "Japan": 0.5}}
    rows = [{"country": "China", "method": m, "seed": 0 if m == "soft prompt" else None,
             "loss": 10.0, "indices": {"PDI": 50.0},
             "opinions": {"similarity": v["China"], "specificity": 0.0, "rank": 1, "n_questions": 3,
                          "target": "China", "by_country": v}} for m, v in by_country.items()]
    (tmp_path / "experiment.json").write_text(json.dumps({"countries": ["China"], "config": {}}))
    (tmp_path / "results.json").write_text(json.dumps({"targets": {"China": {"PDI": 80.0}}, "rows": rows}))
    page = write_report(tmp_path).read_text()
    assert (tmp_path / "opinions_China.png").is_file() and "Opinions: similarity to every country, China" in page
    assert "<h2>Opinions (WVS)</h2>" in page


def test_the_benchmark_records_each_runs_configuration_and_adds_soft_prompts(tiny_model, tiny_tokenizer, tmp_path):
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "opinions.py"
    sys.path.insert(0, str(path.parent))  # its `from common import ...`
    spec = importlib.util.spec_from_file_location("opinions_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    session = Session(MeasureConfig(batch_size=8), backend=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))
    hidden = tiny_model.get_input_embeddings().weight.shape[1]
    SoftPrompt(torch.randn(2, hidden), "prefix", {"prompt": "persona", "country": "Japan"}).save(tmp_path / "run")
    plain = bench.run_one(session, lookup("JP"), "icl", 2)
    soft = bench.run_one(session, lookup("JP"), "naive", 2, str(tmp_path / "run"))
    assert plain["method"] == "icl" and plain["config"]["prompt"] == "icl" and plain["config"]["limit"] == 2
    assert soft["method"] == "soft prompt" and soft["config"]["prompt"] == "persona"  # its training style
    assert soft["config"]["soft_prompt"]["n_tokens"] == 2 and bench.key(soft) == ("Japan", "soft prompt",
                                                                                   str(tmp_path / "run"))
    for entry in (plain, soft):
        assert entry["metrics"]["n_questions"] == 2 and entry["seconds_per_question"] > 0
        assert len(entry["metrics"]["by_country"]) == 39 and "non_answers" in entry["metrics"]["rules"]
    assert bench.parse_soft_prompts("CN=runs/x, US=runs/y") == [("CN", "runs/x"), ("US", "runs/y")]


@pytest.mark.integration
def test_evaluate_opinions_on_the_default_model():
    """The letters A-K are single tokens for SmolLM2 (next-token scoring), and its figures are what BENCHMARKS.md
    reports for the U.S.A. on the first questions (naive: the same distributions whatever the target)."""
    res = _invoke("evaluate", "opinions", "--country", "US", "--limit", "3", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_questions"] == 3 and 0.2 < out["similarity"] < 1 and out["n_countries"] == 39
    assert out["order_agreement"] < 0.9  # this model answers partly by option position (the README's section on it)
