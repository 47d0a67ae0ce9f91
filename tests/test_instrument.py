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


def test_idv_uai_lto_ivr_match_the_manuals_formulas(q):
    # VSM 2013 manual: IDV = 35(m04 - m01) + 35(m09 - m06) + C(ic)    UAI = 40(m18 - m15) + 25(m21 - m24) + C(uc)
    #                  LTO = 40(m13 - m14) + 25(m19 - m22) + C(ls)    IVR = 35(m12 - m11) + 40(m17 - m16) + C(ir)
    means = np.full(24, 3.0)
    m = {1: 2.0, 4: 3.5, 6: 1.8, 9: 2.6,            # IDV
         15: 2.2, 18: 3.7, 21: 4.1, 24: 2.9,        # UAI
         13: 4.0, 14: 2.5, 19: 1.6, 22: 3.4,        # LTO
         11: 3.3, 12: 2.1, 16: 1.9, 17: 4.4}        # IVR
    for item, value in m.items():
        means[item - 1] = value
    idx = dict(zip(DIMENSIONS, q.indices(means, [7, 5, 0, -10, 20, -8])))
    assert idx["IDV"] == pytest.approx(85.5)   # 35(1.5) + 35(0.8) + 5 = 52.5 + 28 + 5
    assert idx["UAI"] == pytest.approx(80.0)   # 40(1.5) + 25(1.2) - 10 = 60 + 30 - 10
    assert idx["LTO"] == pytest.approx(35.0)   # 40(1.5) + 25(-1.8) + 20 = 60 - 45 + 20
    assert idx["IVR"] == pytest.approx(50.0)   # 35(-1.2) + 40(2.5) - 8 = -42 + 100 - 8
    assert idx["PDI"] == pytest.approx(7.0) and idx["MAS"] == pytest.approx(0.0)  # their items all 3.0: only C
    # each formula's sign: raising the first item of a term raises the index by its weight per scale point
    for dim, item, weight in [("IDV", 4, 35), ("IDV", 1, -35), ("UAI", 18, 40), ("UAI", 24, -25), ("LTO", 13, 40),
                              ("LTO", 22, -25), ("IVR", 12, 35), ("IVR", 16, -40)]:
        bumped = means.copy()
        bumped[item - 1] += 0.5
        diff = q.raw_indices(bumped) - q.raw_indices(means)
        assert diff[DIMENSIONS.index(dim)] == pytest.approx(0.5 * weight), (dim, item)


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
    (lambda d: d["indices"]["LTO"].update(terms=[]), "index formula for LTO is missing"),  # (no LTO at all: a
    # five-dimension instrument, tests/test_instruments.py)
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
