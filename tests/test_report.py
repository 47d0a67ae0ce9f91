"""HTML reports from a synthetic experiment folder and from a single align run folder."""
from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from culturealign.errors import CultureAlignError
from culturealign.instrument import DIMENSIONS
from culturealign.report import write_report

TARGETS = {"China": dict(zip(DIMENSIONS, [80, 20, 66, 30, 87, 24])),
           "U.S.A.": dict(zip(DIMENSIONS, [40, 91, 62, 46, 26, 68]))}
PNG = b"\x89PNG\r\n\x1a\n"


def _write_run(folder: Path, country: str, optimizer: str, seed: int, rng) -> None:
    folder.mkdir(parents=True)
    loss, rows, evals = 200.0, [], 0
    for gen in range(1, 11):
        evals += 16
        loss = min(loss, loss * rng.uniform(0.7, 1.0))
        rows.append({"generation": gen, "evaluations": evals, "best_loss": loss, "median_loss": loss * 1.4,
                     "generation_best": loss * 1.1, **{f"best_{d}": rng.uniform(0, 100) for d in DIMENSIONS}})
    with (folder / "history.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    best = {d: {"model": TARGETS[country][d] + rng.normal(0, 10), "target": TARGETS[country][d]} for d in DIMENSIONS}
    record = {"config": {"optimizer": optimizer, "seed": seed, "country": country}, "country": {"name": country},
              "best": {"loss": loss, "indices": best}}
    (folder / "run.json").write_text(json.dumps(record))


def make_experiment(root: Path, seed: int = 0) -> Path:
    """2 countries x 2 seeds, runs of two optimisers, baselines without a seed, CulturalBench for some methods."""
    rng = np.random.default_rng(seed)
    rows = []
    for country, target in TARGETS.items():
        for method, noise in (("naive", 40), ("persona", 30), ("icl", 20), ("reference mean", 25)):
            idx = {d: target[d] + rng.normal(0, noise) for d in DIMENSIONS}
            bench = ({"judgement_accuracy": 0.6, "question_accuracy": 0.2, "n_questions": 59}
                     if method == "naive" else None)
            rows.append({"country": country, "method": method, "seed": None, "indices": idx, "culturalbench": bench,
                         "loss": float(sum(abs(idx[d] - target[d]) for d in DIMENSIONS))})
        for s in (0, 1):
            idx = {d: target[d] + rng.normal(0, 8) for d in DIMENSIONS}
            rows.append({"country": country, "method": "soft prompt", "seed": s, "indices": idx,
                         "loss": float(sum(abs(idx[d] - target[d]) for d in DIMENSIONS)),
                         "culturalbench": {"judgement_accuracy": 0.62 + 0.01 * s, "question_accuracy": 0.21,
                                           "n_questions": 59}})
            for opt in ("de", "cma"):
                _write_run(root / "runs" / f"{country}-{opt}-{s}", country, opt, s, rng)
    (root / "experiment.json").write_text(json.dumps({"config": {"budget": 160, "popsize": 16},
                                                      "countries": list(TARGETS), "seeds": [0, 1]}))
    (root / "results.json").write_text(json.dumps({"targets": TARGETS, "rows": rows}))
    return root


def _images(page: str) -> dict[str, bytes]:
    return {m.group(1): base64.b64decode(m.group(2))
            for m in re.finditer(r"<img alt='([^']+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", page)}


def test_experiment_report(tmp_path):
    folder = make_experiment(tmp_path / "exp")
    out = write_report(folder)
    assert out == folder / "report.html"
    page = out.read_text()
    images = _images(page)
    expected = {"radar_China.png", "radar_U_S_A.png", "atlas.png", "convergence.png", "dimensions.png"}
    assert set(images) == expected
    for name in expected:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000 and images[name] == data  # the inlined copy is the file
    # tables: every method of each country, the paired tests against each baseline, CulturalBench accuracies
    assert page.count("<td>soft prompt</td>") >= 2 + 2  # loss table + CulturalBench table
    assert "<td>all countries</td>" in page and page.count("<td>icl</td>") >= 2 + 3
    assert "0.625" in page  # CulturalBench judgement accuracy of the soft prompt, mean of 0.62 and 0.63
    assert "Paired tests need" not in page


def test_loss_ci_in_table(tmp_path):
    folder = make_experiment(tmp_path / "exp")
    rows = json.loads((folder / "results.json").read_text())["rows"]
    soft = [r["loss"] for r in rows if r["country"] == "China" and r["method"] == "soft prompt"]
    out = write_report(folder, tmp_path / "elsewhere" / "r.html")
    assert out.is_file() and (tmp_path / "elsewhere" / "convergence.png").is_file()
    assert f"<td>{np.mean(soft):.2f}</td>" in out.read_text()


def test_single_run_report(tmp_path):
    rng = np.random.default_rng(1)
    run = tmp_path / "run"
    _write_run(run, "China", "de", 3, rng)
    page = write_report(run).read_text()
    assert set(_images(page)) == {"radar_China.png", "convergence.png", "dimensions.png"}
    assert "Tests against the baselines need at least two" in page  # one seed: no test
    # with comparison.json the baselines join; the soft prompt row is labelled by its folder there
    comparison = {"country": {"name": "China"}, "loss_dimensions": list(DIMENSIONS),
                  "rows": [{"method": "target", "indices": TARGETS["China"], "loss": 0.0},
                           {"method": "naive", "indices": {d: 50.0 for d in DIMENSIONS}, "loss": 123.0},
                           {"method": "icl", "indices": {d: 60.0 for d in DIMENSIONS}, "loss": 98.5},
                           {"method": "runs/cn-0", "indices": {d: 70.0 for d in DIMENSIONS}, "loss": 45.25}]}
    (run / "comparison.json").write_text(json.dumps(comparison))
    page = write_report(run).read_text()
    assert "<td>123.00</td>" in page and "<td>45.25</td>" in page and "<td>soft prompt</td>" in page
    assert (run / "dimensions.png").stat().st_size > 5000


def test_not_a_result_folder(tmp_path):
    with pytest.raises(CultureAlignError, match="neither an experiment"):
        write_report(tmp_path)
