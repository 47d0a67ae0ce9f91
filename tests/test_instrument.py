import json

import numpy as np
import pytest

from culturealign.errors import CultureAlignError
from culturealign.instrument import DIMENSIONS, Questionnaire, read_means


@pytest.fixture(scope="module")
def q():
    return Questionnaire.builtin()


def test_builtin_has_24_items_with_five_options(q):
    assert [i.id for i in q.items] == list(range(1, 25))
    assert all(len(i.options) == 5 for i in q.items)
    assert q.items[0].intro.startswith("Please think of an ideal job")


def test_indices_match_hand_computation(q):
    means = np.full(24, 3.0)
    means[6], means[1] = 2.0, 3.5        # m07, m02
    means[19], means[22] = 4.0, 2.5      # m20, m23
    means[4], means[2] = 1.5, 2.5        # m05, m03
    means[7], means[9] = 3.2, 2.2        # m08, m10
    idx = dict(zip(DIMENSIONS, q.indices(means, [10, 0, 0, 0, 0, 0])))
    # PDI = 35(2.0-3.5) + 25(4.0-2.5) + 10 = -52.5 + 37.5 + 10
    assert idx["PDI"] == pytest.approx(-5.0)
    # MAS = 35(1.5-2.5) + 35(3.2-2.2) = 0 with the manual's weights
    assert idx["MAS"] == pytest.approx(0.0)
    assert idx["IDV"] == pytest.approx(0.0) and idx["UAI"] == pytest.approx(0.0)
    # the CAT paper's second MAS weight 25: 35(-1) + 25(1) = -10
    assert q.with_mas_weight(25).indices(means, np.zeros(6))[2] == pytest.approx(-10.0)


def test_indices_are_batched(q):
    means = np.random.default_rng(0).uniform(1, 5, size=(3, 24))
    batched = q.raw_indices(means)
    assert batched.shape == (3, 6)
    np.testing.assert_allclose(batched[1], q.raw_indices(means[1]))


def _broken(q, mutate):
    data = json.loads(json.dumps(q.raw))
    mutate(data)
    return data


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["items"].pop(5), "items [6] are missing"),
    (lambda d: d["scales"]["agreement"].pop(), "scale 'agreement' has 4 options"),
    (lambda d: d["indices"].pop("LTO"), "index formula for LTO is missing"),
    (lambda d: d["items"][20].update(block="nope"), "unknown block 'nope'"),
])
def test_malformed_questionnaire_names_the_defect(q, mutate, message):
    with pytest.raises(CultureAlignError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Questionnaire.from_dict(_broken(q, mutate), source="test")


def test_questionnaire_file_not_json(tmp_path):
    bad = tmp_path / "q.json"
    bad.write_text("{not json")
    with pytest.raises(CultureAlignError, match="not valid JSON"):
        Questionnaire.from_file(bad)


def test_read_means_formats(tmp_path):
    values = [1 + (i % 5) * 0.5 for i in range(24)]
    (tmp_path / "m.json").write_text(json.dumps(values))
    (tmp_path / "m.csv").write_text("item,mean\n" + "\n".join(f"{i + 1},{v}" for i, v in enumerate(values)))
    (tmp_path / "keyed.json").write_text(json.dumps({f"m{i + 1:02d}": v for i, v in enumerate(values)}))
    for name in ("m.json", "m.csv", "keyed.json"):
        np.testing.assert_allclose(read_means(tmp_path / name), values)


def test_read_means_with_23_items_is_an_error(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps([3.0] * 23))
    with pytest.raises(CultureAlignError, match=r"has 23 item means; need exactly 24.*missing \[24\]"):
        read_means(tmp_path / "m.json")
