"""Every kind of bad input named in the issue "Trustworthy evidence", each in its own test: one clear error
(``error: ...`` on one line, exit code 2, raised as SystemExit by the CLI), never another exception."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturealign.cli import app
from culturealign.config import AlignConfig, MeasureConfig, SoftPromptConfig
from culturealign.errors import CultureAlignError
from culturealign.instrument import DIMENSIONS, Questionnaire
from culturealign.runs import load_run

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def fails(*args, message: str):
    """The command ends with one ``error:`` line containing ``message`` and exit code 2 (not an uncaught exception)."""
    res = invoke(*args)
    assert isinstance(res.exception, SystemExit), f"{res.exception!r}\n{res.output}"
    assert res.exception.code == 2 and res.exit_code == 2, res.output
    assert message in res.output, res.output
    assert res.output.count("error:") == 1, res.output
    return res


def succeeds(*args):
    res = invoke(*args)
    assert res.exception is None and res.exit_code == 0, f"{res.exception!r}\n{res.output}"
    return res


# ---- run.json in compare and evaluate robustness ----------------------------------------------------------------------
def _record() -> dict:
    return {"status": "finished", "config": AlignConfig(country="China").to_dict(),
            "constants": {"kind": "zero", "values": dict.fromkeys(DIMENSIONS, 0.0)},
            "best": {"loss": 10.0, "indices": None}}


def _outdated(change):
    def make():
        record = _record()
        change(record)
        return json.dumps(record)
    return make


RUN_DEFECTS = {
    "corrupt bytes": (lambda: b"\x00\xffnot json at all", "is unreadable or not valid JSON"),
    "truncated JSON": (lambda: json.dumps(_record())[:50], "is unreadable or not valid JSON"),
    "a list, not an object": (lambda: "[1, 2, 3]", "the top level must be a JSON object"),
    "no config": (_outdated(lambda r: r.pop("config")), "no 'config' object"),
    "no config.measure": (_outdated(lambda r: r["config"].pop("measure")), "no 'config.measure' object"),
    "config.measure not an object": (_outdated(lambda r: r["config"].update(measure=[1])),
                                     "no 'config.measure' object"),
    "unknown key in config.measure (older version)": (
        _outdated(lambda r: r["config"]["measure"].update(temperature=0.7)),
        "config.measure has unknown field(s) temperature"),
    "unknown key in config.soft": (_outdated(lambda r: r["config"]["soft"].update(lr=0.1)),
                                   "config.soft has unknown field(s) lr"),
    "unknown key in config": (_outdated(lambda r: r["config"].update(sigma0=1)), "config has unknown field(s) sigma0"),
    "no country": (_outdated(lambda r: r["config"].pop("country")), "config lacks country"),
    "wrong type": (_outdated(lambda r: r["config"]["measure"].update(batch_size="24")), "batch_size must be int"),
    "bad value": (_outdated(lambda r: r["config"]["measure"].update(batch_size=0)),
                  "config.measure.batch_size must be at least 1"),  # the file's key, not the flag
    "no constants": (_outdated(lambda r: r.pop("constants")), "no 'constants' object"),
    "NaN constant": (_outdated(lambda r: r["constants"]["values"].update(PDI=float("nan"))),
                     "constants.values must hold a finite number"),
}


def _run_folder(tmp_path: Path, content) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


@pytest.mark.parametrize("defect", list(RUN_DEFECTS))
def test_compare_with_a_bad_run_json(tmp_path, defect):
    make, message = RUN_DEFECTS[defect]
    folder = _run_folder(tmp_path, make())
    res = fails("compare", folder, message=message)
    assert str(folder) in res.output


@pytest.mark.parametrize("defect", ["corrupt bytes", "no config.measure", "unknown key in config.measure (older version)",
                                    "NaN constant"])
def test_evaluate_robustness_with_a_bad_run_json(tmp_path, defect):
    make, message = RUN_DEFECTS[defect]
    fails("evaluate", "robustness", "--soft-prompt", _run_folder(tmp_path, make()), message=message)


def test_not_a_run_folder(tmp_path):
    fails("compare", tmp_path, message="is not a run folder written by `culturealign align` (no run.json)")
    fails("evaluate", "robustness", "--soft-prompt", tmp_path / "nowhere", message="(no such folder)")


def test_load_run_reads_a_valid_record(tmp_path):
    record, config = load_run(_run_folder(tmp_path, json.dumps(_record())))
    assert config == AlignConfig(country="China") and record["status"] == "finished"


# ---- questionnaires ---------------------------------------------------------------------------------------------------
def _questionnaire(change) -> dict:
    data = json.loads(json.dumps(Questionnaire.builtin().raw))
    change(data)
    return data


QUESTIONNAIRE_DEFECTS = {
    "scales as a list": (lambda d: d.update(scales=list(d["scales"].values())), "'scales' must be an object"),
    "a non-numeric weight": (lambda d: d["indices"]["PDI"]["terms"][0].__setitem__(0, "35"),
                             "index PDI: term ['35', 7, 2] must be [weight, item_a, item_b] with a finite numeric"),
    "a NaN weight": (lambda d: d["indices"]["UAI"]["terms"][1].__setitem__(0, float("nan")), "index UAI: term"),
    "an index spec as a list": (lambda d: d["indices"].update(LTO=[[40, 13, 14], [25, 19, 22]]),
                                "index LTO must be an object with 'name' and 'terms', not a list"),
    "terms not a list": (lambda d: d["indices"]["IVR"].update(terms={"a": 1}), "index IVR: 'terms' must be a list"),
    "an item's block as a list": (lambda d: d["items"][0].update(block=["ideal_job"]),
                                  "item 1: 'block' must be a string, not a list"),
    "a block defined as a list": (lambda d: d["blocks"].update(ideal_job=["intro", "importance"]),
                                  "block 'ideal_job' must be an object"),
    "a scale option that is not text": (lambda d: d["scales"]["agreement"].__setitem__(2, 3),
                                        "scale 'agreement': every option must be non-empty text"),
}


@pytest.mark.parametrize("defect", list(QUESTIONNAIRE_DEFECTS))
def test_questionnaire_type_errors(tmp_path, defect):
    change, message = QUESTIONNAIRE_DEFECTS[defect]
    path = tmp_path / "q.json"
    path.write_text(json.dumps(_questionnaire(change)))
    with pytest.raises(CultureAlignError, match="is malformed"):
        Questionnaire.load(path)
    (tmp_path / "m.json").write_text(json.dumps([3.0] * 24))
    fails("indices", "--means", tmp_path / "m.json", "--questionnaire", path, message=message)


def test_mas_with_one_term_is_an_error_only_for_cat_mas_weight(tmp_path):
    # a questionnaire is any instrument now: MAS needs its second term only where --cat-mas-weight changes it
    path = tmp_path / "q.json"
    path.write_text(json.dumps(_questionnaire(lambda d: d["indices"]["MAS"]["terms"].pop())))
    (tmp_path / "m.json").write_text(json.dumps([3.0] * 24))
    out = json.loads(succeeds("indices", "--means", tmp_path / "m.json", "--questionnaire", path, "--json").output)
    assert out["mas_weight"] is None and set(out["indices"]) == set(DIMENSIONS)
    fails("indices", "--means", tmp_path / "m.json", "--questionnaire", path, "--cat-mas-weight",
          message="index MAS needs two terms")


# ---- item means and constants files ---------------------------------------------------------------------------------
MEANS_DEFECTS = {
    "m.json": {
        "null": ("null", "expected a list of 24 numbers or an object keyed by item, not null"),
        "a null mean": (json.dumps([3.0] * 23 + [None]), "entry 24 must be a finite number, not None"),
        "a nested list": (json.dumps([[3.0] * 24]), "entry 1 must be a finite number"),
        "a nested list among means": (json.dumps([3.0] * 23 + [[3.0]]), "entry 24 must be a finite number"),
        "NaN": (json.dumps([3.0] * 23 + [float("nan")]), "entry 24 must be a finite number, not nan"),
        "infinity": (json.dumps({f"m{i:02d}": 3.0 for i in range(1, 24)} | {"m24": float("inf")}),
                     "item m24 must be a finite number, not inf"),
        "a string": (json.dumps(["3"] * 24), "entry 1 must be a finite number, not '3'"),
        "an item twice": (json.dumps({"1": 3.0, "m01": 3.0} | {str(i): 3.0 for i in range(2, 25)}),
                          "item 1 is given twice"),
    },
    "m.csv": {
        "NaN": ("\n".join(f"{i},{'nan' if i == 5 else 3}" for i in range(1, 25)),
                "the means of items [5] are not finite numbers"),
        "a third column": ("\n".join(f"{i},3,4" for i in range(1, 25)), "row 1 has 3 columns"),
        "not a number": ("\n".join(f"{i},{'x' if i == 2 else 3}" for i in range(1, 25)), "row 2: 'x' is not a number"),
        "not UTF-8": (b"1,3\n\xff\xfe,3", "is unreadable"),
    },
}


@pytest.mark.parametrize("name,defect", [(n, d) for n, ds in MEANS_DEFECTS.items() for d in ds])
def test_bad_means_files(tmp_path, name, defect):
    content, message = MEANS_DEFECTS[name][defect]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    fails("indices", "--means", path, message=message)


@pytest.mark.parametrize("content,message", [
    (json.dumps([0, 0, float("nan"), 0, 0, 0]), "MAS must be a finite number, not nan"),
    (json.dumps(dict.fromkeys(DIMENSIONS, 1) | {"PDI": None}), "PDI must be a finite number, not None"),
    (json.dumps("123456"), "expected a list or an object, not str"),
    (json.dumps(dict.fromkeys(DIMENSIONS, 1) | {"XYZ": 1}), "unknown key(s) XYZ"),
    ("[1, 2", "is unreadable or not valid JSON"),
])
def test_bad_constants_files(tmp_path, content, message):
    (tmp_path / "m.json").write_text(json.dumps([3.0] * 24))
    (tmp_path / "c.json").write_text(content)
    fails("indices", "--means", tmp_path / "m.json", "--constants", tmp_path / "c.json", message=message)


# ---- options accepted silently before ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-3"])
def test_batch_size_must_be_positive(value):
    fails("measure", "--country", "CN", "--batch-size", value, message=f"--batch-size must be at least 1, not {value}")
    fails("align", "--country", "CN", "--out", "unused", "--batch-size", value, message="--batch-size must be at least 1")
    with pytest.raises(CultureAlignError, match="MeasureConfig.batch_size"):  # the library names the field
        MeasureConfig(batch_size=int(value))


@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_scale_must_be_positive(value):
    fails("align", "--country", "CN", "--out", "unused", "--scale", value, message="--scale must be a positive number")
    with pytest.raises(CultureAlignError, match="SoftPromptConfig.scale"):
        SoftPromptConfig(scale=float(value))


def test_other_measure_settings_are_checked():
    for kw, message in [({"samples": 0}, "MeasureConfig.samples"), ({"max_memory_mb": -5.0}, "MeasureConfig.max_memory_mb"),
                        ({"dimensions": "PDI,XYZ"}, "unknown dimension"), ({"scoring": "best"}, "unknown scoring")]:
        with pytest.raises(CultureAlignError, match=message):
            MeasureConfig(**kw)


def test_nan_means_exit_2_not_nan_indices(tmp_path):
    (tmp_path / "m.json").write_text("[" + ", ".join(["3.0"] * 23 + ["NaN"]) + "]")
    fails("indices", "--means", tmp_path / "m.json", message="must be a finite number")


# ---- dimensions in lower case, and the --dimensions hint ------------------------------------------------------------
def test_align_accepts_lower_case_dimensions(tmp_path, tiny_model_dir):
    res = succeeds("align", "--optimizer", "cma", "--country", "Albania", "--dimensions", "lto,ivr", "--out", tmp_path / "run", "--model",
                   tiny_model_dir, "--constants", "zero", "--order", "forward", "--popsize", "4", "--budget", "4",
                   "--placement", "suffix", "--json")
    record = json.loads(res.stdout)
    assert record["loss_dimensions"] == ["LTO", "IVR"] and record["config"]["measure"]["dimensions"] == ["LTO", "IVR"]
    assert MeasureConfig(dimensions="ivr, Lto").dimensions == ["LTO", "IVR"]


def test_compare_accepts_lower_case_dimensions(tiny_model_dir):
    res = succeeds("compare", "--country", "Albania", "--dimensions", "ivr,lto", "--model", tiny_model_dir,
                   "--constants", "zero", "--json")
    assert json.loads(res.stdout)["loss_dimensions"] == ["LTO", "IVR"]


@pytest.mark.parametrize("command", [["measure"], ["align", "--out", "unused"], ["compare"],
                                     ["experiment", "--out", "unused", "--countries"]])
def test_missing_dimension_hint_names_an_option_the_command_has(command):
    res = fails(*command, *(["Albania"] if command[0] == "experiment" else ["--country", "Albania"]),
                message="restrict the loss with --dimensions LTO,IVR")
    name = command[0]
    assert "--dimensions" in invoke(name, "--help").output


def test_experiment_with_dimensions(tmp_path, tiny_model_dir):
    res = succeeds("experiment", "--countries", "Albania", "--dimensions", "lto,ivr", "--seeds", "0",
                   "--culturalbench-limit", "0", "--model", tiny_model_dir, "--constants", "zero", "--out",
                   tmp_path / "exp", "--json")
    config = json.loads((tmp_path / "exp" / "experiment.json").read_text())["config"]
    assert config["align"]["measure"]["dimensions"] == ["LTO", "IVR"]
    assert {r["method"] for r in json.loads(res.stdout)["rows"]} >= {"naive", "persona", "icl"}


# ---- a quoted ~/model path ---------------------------------------------------------------------------------------------
def test_quoted_home_model_path(tmp_path, monkeypatch, tiny_model_dir):
    from culturealign.models import load_model

    home = tmp_path / "home"
    home.mkdir()
    (home / "tiny").symlink_to(tiny_model_dir, target_is_directory=True)
    monkeypatch.setenv("HOME", str(home))
    lm = load_model("~/tiny")
    assert lm.resolved_path == str(home / "tiny") and lm.model_id == "~/tiny"
    succeeds("measure", "--country", "CN", "--model", "~/tiny", "--constants", "zero", "--order", "forward",
             "--no-items")
    fails("measure", "--country", "CN", "--model", "~/missing", message="model folder")


def test_soft_prompt_with_nan_values(tmp_path, tiny_model_dir):
    import torch

    from culturealign.softprompt import SoftPrompt

    SoftPrompt(torch.full((2, 32), float("nan")), "suffix", {}).save(tmp_path / "nan")
    fails("measure", "--country", "CN", "--model", tiny_model_dir, "--constants", "zero",
          "--soft-prompt", tmp_path / "nan", message="NaN or infinite")
