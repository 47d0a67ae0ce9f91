"""The command line: outputs, JSON schema and one clear message for bad input."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from culturealign.cli import app

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    # CliRunner catches every exception (its output never holds a traceback): an uncaught one is result.exception,
    # while a clean exit, also with an error, is a SystemExit
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def test_countries_json_lists_codes_and_dimensions():
    res = run("countries", "--json")
    assert res.exit_code == 0
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["China"]["iso2"] == "CN" and rows["China"]["code"] == "CHI"
    assert rows["Albania"]["dimensions"] == ["LTO", "IVR"]


@pytest.mark.parametrize("args,message", [
    (["measure", "--country", "Chnia"], "unknown country 'Chnia'"),
    (["measure", "--country", "CN", "--model", "/no/such/model"], "model folder /no/such/model does not exist"),
    (["measure", "--country", "Albania", "--model", "/no/such/model"], "--dimensions LTO,IVR"),
    (["measure", "--country", "CN", "--order", "sideways"], "unknown option order"),
])
def test_bad_input_gives_one_clear_message(args, message):
    res = run(*args)
    assert res.exit_code == 2
    assert message in res.output and res.output.count("error:") == 1


def test_malformed_questionnaire_message(tmp_path, tiny_model_dir):
    from culturealign.instrument import Questionnaire

    data = Questionnaire.builtin().raw | {"items": Questionnaire.builtin().raw["items"][:23]}
    (tmp_path / "q.json").write_text(json.dumps(data))
    res = run("measure", "--country", "CN", "--model", tiny_model_dir, "--questionnaire", tmp_path / "q.json")
    assert res.exit_code == 2 and "items [24] are missing" in res.output


def test_means_file_with_23_items(tmp_path):
    (tmp_path / "m.csv").write_text("\n".join(f"{i},3" for i in range(1, 24)))
    res = run("indices", "--means", tmp_path / "m.csv")
    assert res.exit_code == 2 and "has 23 item means" in res.output


def test_indices_from_means(tmp_path):
    means = [3.0] * 24
    means[6] = 2.0  # m07: PDI = 35 * (2 - 3) = -35
    (tmp_path / "m.json").write_text(json.dumps(means))
    (tmp_path / "c.json").write_text(json.dumps({"PDI": 100, "IDV": 0, "MAS": 0, "UAI": 0, "LTO": 0, "IVR": 0}))
    res = run("indices", "--means", tmp_path / "m.json", "--constants", tmp_path / "c.json", "--json")
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["indices"]["PDI"] == pytest.approx(65.0) and out["indices"]["IDV"] == 0


def test_measure_json_schema_and_out_file(tmp_path, tiny_model_dir):
    args = ["measure", "--country", "CN", "--country", "US", "--country", "IN", "--prompt", "icl",
            "--model", tiny_model_dir, "--constants", "zero", "--json", "--out", tmp_path / "m"]
    res = run(*args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) >= {"provenance", "constants", "results", "kendall_tau"}
    rec = out["results"][0]
    assert rec["country"]["name"] == "China" and rec["prompt"] == "icl"
    assert len(rec["items"]) == 24 and all(abs(sum(i["probs"]) - 1) < 1e-6 for i in rec["items"])
    diffs = [abs(rec["indices"][d]["model"] - rec["indices"][d]["target"]) for d in rec["loss_dimensions"]]
    assert rec["loss"] == pytest.approx(sum(diffs))
    assert rec["diagnostics"]["order_correlation"] is not None
    assert set(out["kendall_tau"]) == {"PDI", "IDV", "MAS", "UAI", "LTO", "IVR"}
    assert out["provenance"]["versions"]["torch"]
    assert json.loads((tmp_path / "m" / "measurement.json").read_text()) == out
    # an existing output is never silently overwritten
    again = run(*args)
    assert again.exit_code == 2 and "--force" in again.output


def test_measure_restricted_dimensions(tiny_model_dir):
    res = run("measure", "--country", "Albania", "--dimensions", "LTO,IVR", "--model", tiny_model_dir,
              "--constants", "zero", "--order", "forward", "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)["results"][0]
    assert rec["loss_dimensions"] == ["LTO", "IVR"]
    assert rec["loss"] == pytest.approx(rec["indices"]["LTO"]["abs_diff"] + rec["indices"]["IVR"]["abs_diff"])


def test_anchored_constants_are_fitted_cached_and_recorded(tiny_model_dir):
    res = run("measure", "--country", "CN", "--model", tiny_model_dir, "--order", "forward", "--json")
    assert res.exit_code == 0, res.output
    c = json.loads(res.stdout)["constants"]
    assert c["kind"] == "anchored" and len(c["references"]) == 8
    # C_d = mean(published_d - raw_d) over the reference countries
    from culturealign.targets import lookup

    pdi = np.mean([lookup(n).scores["PDI"] - raw["PDI"] for n, raw in c["raw_indices"].items()])
    assert c["values"]["PDI"] == pytest.approx(pdi)
    again = json.loads(run("measure", "--country", "CN", "--model", tiny_model_dir, "--order", "forward", "--json").stdout)
    assert again["constants"]["values"] == c["values"] and "cache" in again["constants"]


def test_help_keeps_install_extras_in_brackets():
    """Rich reads [vllm] as markup and drops it unless escaped: the install hint must survive in --help."""
    result = runner.invoke(app, ["measure", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "culturealign[vllm]" in result.output
    result = runner.invoke(app, ["align", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "culturealign[ray]" in result.output
