"""Output to a file or a pipe (CliRunner is not a terminal): tables and progress lines are printed whole."""
import re
from pathlib import Path

from typer.testing import CliRunner

from culturealign.cli import app

REWORDED = Path(__file__).resolve().parent.parent / "culturealign" / "data" / "vsm2013" / "vsm2013-reworded.json"
runner = CliRunner()


def test_progress_and_tables_are_whole_when_not_a_terminal(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")  # even a narrow terminal on another stream does not cut a log
    res = runner.invoke(app, ["align", "--country", "IN", "--out", str(tmp_path / "run"), "--model", str(tiny_model_dir),
                              "--constants", "zero", "--optimizer", "cma", "--popsize", "4", "--budget", "8"])
    assert res.exit_code == 0, res.output
    # one plain line per generation, not a live bar cut at 80 columns ("3… evals", "0:… 0:…")
    lines = [line for line in res.output.splitlines() if line.startswith("gen ")]
    assert len(lines) == 2, res.output
    pattern = (r"gen (\d+)/2 \((\d+)/8 evals\)  best \d+\.\d  val \d+\.\d \(gen \d\)  PDI -?\d+ IDV -?\d+ MAS -?\d+ UAI -?\d+ LTO -?\d+ IVR -?\d+  "
               r"\d+:\d\d:\d\d elapsed, (\d+:\d\d:\d\d|-) left$")
    assert [re.match(pattern, line).group(1, 2) for line in lines] == [("1", "4"), ("2", "8")]
    assert "…" not in res.output and "\x1b[" not in res.output

    res = runner.invoke(app, ["evaluate", "robustness", "--soft-prompt", str(tmp_path / "run"),
                              "--questionnaire", str(REWORDED)])
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    header = next(line for line in res.output.splitlines() if "condition" in line)
    assert "loss (soft prompt)" in header and "loss (naive, no soft prompt)" in header and "order r" in header
    row = next(line for line in res.output.splitlines() if "reworded" in line)
    assert "questionnaire vsm2013-reworded.json" in row and len(re.findall(r"-?\d+\.\d+", row)) == 9
    assert max(map(len, res.output.splitlines())) > 80


def test_a_long_cell_is_not_cut(capsys):
    from culturealign import terminal

    name = "a condition with a very long name " * 5
    dims = {d: 1.0 for d in ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")}
    terminal.print_robustness({"run": "run", "country": {"name": "India"}, "prompt": "naive",
                                "conditions": [{"condition": name.strip(), "indices": dims, "loss": 1.0,
                                                "plain_loss": 2.0, "diagnostics": {"order_correlation": 0.5}}]})
    assert name.strip() in capsys.readouterr().out
