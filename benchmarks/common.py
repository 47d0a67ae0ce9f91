"""Helpers shared by the benchmark scripts: machine description and writing result sections to BENCHMARKS.md."""
from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tiny in-memory tokenizer and model (tests/toymodels.py)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")


def command() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def matmul_rate(n: int = 1024, repeats: int = 20, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """This machine's matmul rate in FLOP/s (n x n by n x n in ``dtype`` on ``device``, best of a few)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def counting_forward(scorer, counter: list[int]):
    """A scorer's forward pass that adds the positions it runs (padding included) to ``counter[0]``; set it as
    ``scorer._forward`` and ``del scorer._forward`` to go back to the class's own method."""
    forward = scorer._forward

    def counted(embeds, mask, *args, **kwargs):
        counter[0] += embeds.shape[0] * embeds.shape[1]
        return forward(embeds, mask, *args, **kwargs)
    return counted


def validation_points(history: str) -> list[dict]:
    """The validated steps of a run's history.csv text: step, validation loss, forward equivalents, wall seconds."""
    import csv
    import io

    return [{"step": int(row["generation"]), "validation": float(row["validation_loss"]),
             "forward_equivalents": float(row["forward_equivalents"]), "wall_s": float(row["wall_s"])}
            for row in csv.DictReader(io.StringIO(history)) if row["validation_loss"] not in ("", None)]


def early_stop(points: list[dict], patience: int | None) -> dict:
    """Where a run with this patience (validations without a new best, as ``align --patience``) stops, read off the
    validation ``points`` of a run that went on: ``{"kept": point, "stop": point}`` (None: runs to the end). The
    trajectory up to the stop does not depend on the patience, so this is what the shorter run would have done."""
    best, stale = None, 0
    for point in points:
        if best is None or point["validation"] < best["validation"] - 1e-9:
            best, stale = point, 0
        else:
            stale += 1
            if patience is not None and stale >= patience:
                return {"kept": best, "stop": point}
    return {"kept": best, "stop": points[-1]}


def write_section(name: str, body: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"<!-- {name}:start -->\n{body.rstrip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def culturalbench_accuracy(backend, country_name: str, prompt, limit: int, batch_size: int = 24) -> float | None:
    """CulturalBench-Hard question accuracy of ``prompt`` (a SoftPrompt, or None for the plain model) on the first
    ``limit`` questions about the country; None when it has none."""
    from culturealign.culturalbench import culturalbench_metrics, load_culturalbench, score_judgements
    from culturealign.errors import CultureAlignError

    try:
        judgements = load_culturalbench(country_name, limit)
    except CultureAlignError:
        return None
    if not judgements:
        return None
    return culturalbench_metrics(judgements, score_judgements(backend, judgements, None, prompt,
                                                              batch_size))["question_accuracy"]

