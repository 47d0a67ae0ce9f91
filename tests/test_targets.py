import pytest

from culturealign.errors import CultureAlignError
from culturealign.config import parse_dimensions
from culturealign.targets import all_countries, lookup


@pytest.mark.parametrize("query", ["CN", "CHN", "China", "CHI", "china", " cn "])
def test_china_answers_to_all_its_codes(query):
    c = lookup(query)
    assert c.name == "China"
    assert c.scores == {"PDI": 80, "IDV": 20, "MAS": 66, "UAI": 30, "LTO": 87, "IVR": 24}


def test_paper_countries():
    assert lookup("United States").code == "USA" and lookup("us").scores["IDV"] == 91
    assert lookup("IN").name == "India"
    sa = lookup("SAU")
    assert sa.scores["PDI"] == 95 and sa.scores["LTO"] == 36
    assert sa.sources["PDI"].startswith("supplement") and "2015-08-16" in sa.sources["LTO"]


def test_hofstede_code_wins_over_iso_clash():
    assert lookup("SLV").name == "Slovenia"
    assert lookup("SV").name == "El Salvador"


def test_unknown_country_lists_closest_matches():
    with pytest.raises(CultureAlignError, match=r"unknown country 'Chnia'.*China \(CHI\)"):
        lookup("Chnia")


def test_missing_dimension_is_named_with_a_fix():
    albania = lookup("Albania")
    assert albania.dimensions == ["LTO", "IVR"]
    with pytest.raises(CultureAlignError, match=r"no published score for PDI, IDV, MAS, UAI.*--dimensions LTO,IVR"):
        albania.vector()
    assert list(albania.vector(parse_dimensions("lto,ivr"))) == [61, 15]


def test_matrix_size():
    rows = all_countries()
    assert len(rows) == 111
    assert sum(len(c.dimensions) == 6 for c in rows) == 66  # 65 in the matrix + Saudi Arabia from the supplement


def test_parse_dimensions_rejects_unknown():
    with pytest.raises(CultureAlignError, match="unknown dimension"):
        parse_dimensions("PDI,XYZ")
