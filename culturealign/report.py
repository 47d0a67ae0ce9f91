"""A self-contained HTML report (figures inlined as base64 PNG, also written as PNG files) of an experiment folder
(``experiment.json`` + ``results.json`` + ``runs/*/``) or of a single ``culturealign align`` run folder.

Figures: ``radar_<country>.png`` (target, naive, ICL and soft prompt on the questionnaire's dimensions, the
VSM 2013's six unless another instrument was used), ``convergence.png``
(best loss against evaluations per run, by optimiser), ``dimensions.png`` (absolute error per dimension and
method), ``opinions_<country>.png`` (when the rows carry the ``opinions`` evaluation: similarity to every
country's answers before and after alignment, the target marked) and, for an experiment, ``atlas.png`` (per
dimension, target against achieved for every country: soft prompt, naive and persona). With more than ``MANY_COUNTRIES`` countries (``--countries all``) the per-country
radars and error bars are left out and convergence is one panel of relative curves; the atlas covers them all.
Tables: loss mean and 95% CI per method and country, where alignment helps (the soft prompt against the best
baseline per country), paired tests of the soft prompt against each baseline (several seeds), one table per
evaluation in the rows (CulturalBench-Hard accuracy; :mod:`culturealign.evaluations`), and the runs.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from .errors import CultureAlignError
from .evaluations import ROW_KEYS, describe, is_count
from .io import atomic_write_bytes, atomic_write_text, to_json
from .stats import mean_ci, paired_test

METHODS = ("naive", "persona", "icl", "reference mean", "soft prompt")
BASELINES = ("naive", "persona", "icl", "reference mean")
RADAR_METHODS = ("target", "naive", "icl", "soft prompt")
COLORS = {"target": "black", "naive": "tab:blue", "persona": "tab:orange", "icl": "tab:green",
          "reference mean": "tab:gray", "soft prompt": "tab:red"}
LABEL = {"icl": "ICL"}
ATLAS_METHODS = ("naive", "persona", "soft prompt")
ATLAS_MARKERS = {"naive": "x", "persona": "^", "soft prompt": "o"}
OPINIONS = "opinions"  # the evaluation whose rows carry every country's similarity (culturealign.opinions)
MANY_COUNTRIES = 12  # above this, one figure per country gives way to the atlas
OPT_COLORS = ("tab:purple", "tab:cyan", "tab:olive", "tab:brown", "tab:pink", "tab:blue")
CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;"
       "text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
       "pre{background:#f7f7f7;padding:8px;font-size:12px;overflow-x:auto}.note{color:#555;font-size:13px}")


# ---- loading: both folder kinds become {"countries", "targets", "rows", "runs", "config", "summary"} ----------------
def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CultureAlignError(f"cannot read {path}: {exc}") from None


def _history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def _run(folder: Path) -> dict:
    rec = _read_json(folder / "run.json")
    cfg = rec.get("config", {})
    country = rec.get("country")
    name = country.get("name") if isinstance(country, dict) else cfg.get("country")
    return {"name": folder.name, "optimizer": cfg.get("optimizer", "?"), "seed": cfg.get("seed", rec.get("seed")),
            "country": name or cfg.get("country", "?"), "loss": (rec.get("best") or {}).get("loss"),
            "history": _history(folder / "history.csv"), "record": rec}


def load_folder(folder: Path) -> dict:
    """An experiment or run folder as the report reads it: ``kind``, ``title``, ``countries``, ``targets``, ``rows``
    (one per country, method and seed), ``runs`` and, for an experiment, ``config`` and ``summary``."""
    if (folder / "experiment.json").is_file():
        exp, res = _read_json(folder / "experiment.json"), _read_json(folder / "results.json")
        runs = [_run(p.parent) for p in sorted(folder.glob("runs/*/run.json"))]
        return {"kind": "experiment", "title": f"Experiment {folder.name}",
                "countries": exp.get("countries") or list(res["targets"]),
                "targets": res["targets"], "rows": res["rows"], "runs": runs, "config": exp.get("config"),
                "summary": res.get("summary")}
    if (folder / "run.json").is_file():
        run = _run(folder)
        country, rec = run["country"], run["record"]
        best = (rec.get("best") or {}).get("indices") or {}
        targets = {country: {d: v.get("target") for d, v in best.items()}}
        rows = [{"country": country, "method": "soft prompt", "seed": run["seed"], "loss": run["loss"],
                 "indices": {d: v.get("model") for d, v in best.items()}}]
        if (folder / "comparison.json").is_file():
            comp = _read_json(folder / "comparison.json")
            country = comp.get("country", {}).get("name", country)
            rows = []
            for r in comp["rows"]:
                if r["method"] == "target":
                    targets = {country: r["indices"]}
                else:  # soft prompts are labelled by their run folder in comparison.json
                    method = r["method"] if r["method"] in BASELINES else "soft prompt"
                    rows.append({"country": country, "method": method, "seed": run["seed"], "loss": r["loss"],
                                 "indices": r["indices"]})
        run["country"] = country
        return {"kind": "run", "title": f"Alignment run {folder.name}", "countries": [country], "targets": targets,
                "rows": rows, "runs": [run], "config": rec.get("config"), "summary": None}
    raise CultureAlignError(f"{folder} is neither an experiment folder (experiment.json + results.json) nor an "
                            "align run folder (run.json)")


# ---- figures ---------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display; also safe when a GUI backend was selected before
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "legend.fontsize": 10})
    return plt


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def _method_indices(data: dict, country: str, method: str) -> np.ndarray | None:
    """Mean index vector ``(n_dimensions,)`` of a method over its rows (seeds) for one country, None if absent."""
    vecs = [[_num(r["indices"].get(d)) for d in data["dimensions"]] for r in data["rows"]
            if r["country"] == country and r["method"] == method and r.get("indices")]
    if not vecs:
        return None
    with warnings.catch_warnings():  # a dimension no row has stays NaN (a gap in the radar), no warning needed
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.array(vecs), axis=0)


def _radar(data: dict, country: str):
    plt = _plt()
    dims = data["dimensions"]
    angles = np.linspace(0, 2 * np.pi, len(dims), endpoint=False)
    fig, ax = plt.subplots(figsize=(6, 6.2), subplot_kw={"polar": True}, layout="constrained")
    values = []
    for method in RADAR_METHODS:
        vec = (np.array([_num(data["targets"][country].get(d)) for d in dims]) if method == "target"
               else _method_indices(data, country, method))
        if vec is None or np.all(np.isnan(vec)):
            continue
        values.append(vec)
        closed = np.append(vec, vec[0])
        ax.plot(np.append(angles, angles[0]), closed, color=COLORS[method], lw=2.5 if method == "target" else 1.8,
                ls="--" if method == "target" else "-", marker="o", ms=4, label=LABEL.get(method, method))
    allv = np.concatenate(values) if values else np.array([0.0])
    ax.set_ylim(min(0.0, np.nanmin(allv) - 5), max(100.0, np.nanmax(allv) + 5))  # indices can leave 0..100
    ax.set_theta_offset(np.pi / 2)  # first dimension at the top, clockwise, as radar charts are usually read
    ax.set_theta_direction(-1)
    ax.set_xticks(angles, dims, fontsize=12)
    # radial tick labels as texts between the first two axes, above the profile lines, so a line never hides them
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] < t <= ax.get_ylim()[1]]
    ax.set_rgrids(ticks, [""] * len(ticks))
    for t in ticks:
        ax.text(np.pi / len(dims), t, f"{t:g}", fontsize=9, color="#555", ha="center", va="center", zorder=5,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 0.8})
    ax.set_title(country, fontsize=14, pad=14)
    fig.legend(loc="outside lower center", ncol=4, frameon=False)
    return fig


def _on_grid(run: dict, grid: np.ndarray) -> np.ndarray:
    """The run's best loss at each evaluation count of ``grid`` (a step function; NaN before its first row)."""
    ev = np.array([h["evaluations"] for h in run["history"]])
    best = np.array([h["best_loss"] for h in run["history"]])
    pos = np.searchsorted(ev, grid, side="right") - 1
    return np.where(pos >= 0, best[np.clip(pos, 0, None)], np.nan)


def _convergence_many(data: dict):
    """Every run in one panel: best loss relative to its first generation's, and the median over runs."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.4), layout="constrained")
    runs = [r for r in data["runs"] if r["history"] and r["history"][0].get("best_loss")]
    for r in runs:
        first = r["history"][0]["best_loss"]
        ax.step([h["evaluations"] for h in r["history"]], [h["best_loss"] / first for h in r["history"]],
                where="post", color="tab:red", lw=0.7, alpha=0.25)
    if runs:
        grid = np.array(sorted({h["evaluations"] for r in runs for h in r["history"]}))
        curves = np.array([_on_grid(r, grid) / r["history"][0]["best_loss"] for r in runs])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ax.step(grid, np.nanmedian(curves, axis=0), where="post", color="black", lw=2.2,
                    label=f"median of {len(runs)} runs")
        ax.legend(frameon=False)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best loss / first generation's best")
    ax.set_title(f"{len({r['country'] for r in runs})} countries")
    ax.grid(alpha=0.3)
    return fig


def _convergence(data: dict):
    plt = _plt()
    countries = [c for c in data["countries"] if any(r["country"] == c and r["history"] for r in data["runs"])]
    if len(countries) > MANY_COUNTRIES:
        return _convergence_many(data)
    optimizers = sorted({r["optimizer"] for r in data["runs"]})
    colors = {o: OPT_COLORS[i % len(OPT_COLORS)] for i, o in enumerate(optimizers)}
    n = max(1, len(countries))
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n + 1.5, 4.2), squeeze=False, layout="constrained", sharey=False)
    seeds = defaultdict(int)  # most runs any country has per optimiser, for the legend
    for ax, country in zip(axes[0], countries or ["(no history)"]):
        for opt in optimizers:
            runs = [r for r in data["runs"] if r["country"] == country and r["optimizer"] == opt and r["history"]]
            seeds[opt] = max(seeds[opt], len(runs))
            for r in runs:
                ax.step([h["evaluations"] for h in r["history"]], [h["best_loss"] for h in r["history"]],
                        where="post", color=colors[opt],
                        **({"lw": 0.9, "alpha": 0.45} if len(runs) > 1 else {"lw": 1.8}))
                validated = [h for h in r["history"] if "validation_loss" in h]
                if validated:   # the wording that picks the saved prompt: its curve beside training's
                    ax.plot([h["evaluations"] for h in validated], [h["validation_loss"] for h in validated],
                            ls="--", marker=".", color=colors[opt], lw=1.0, alpha=0.8)
            if len(runs) > 1:
                # only where every seed has data, so the mean is never over a changing set of runs
                lo = max(r["history"][0]["evaluations"] for r in runs)
                hi = min(r["history"][-1]["evaluations"] for r in runs)
                grid = np.array(sorted({h["evaluations"] for r in runs for h in r["history"]
                                        if lo <= h["evaluations"] <= hi}))
                if grid.size:
                    curves = np.array([_on_grid(r, grid) for r in runs])
                    ax.fill_between(grid, curves.min(0), curves.max(0), step="post", color=colors[opt], alpha=0.15)
                    ax.step(grid, curves.mean(0), where="post", color=colors[opt], lw=2.4)
        ax.set_title(country)
        ax.set_xlabel("steps (gradient) / candidate evaluations (black-box)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("L1 loss: selected prompt, training (solid); validation wording (dashed)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[o], lw=2.4 if seeds[o] > 1 else 1.8,
                      label=f"{o} (mean, min-max of {seeds[o]} seeds)" if seeds[o] > 1 else o) for o in optimizers]
    if any(v > 1 for v in seeds.values()):
        handles.append(Line2D([], [], color="gray", lw=0.9, alpha=0.6, label="one seed"))
    fig.legend(handles=handles, loc="outside right center", frameon=False)
    return fig


def _abs_errors(data: dict, country: str, method: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and SD over seeds (None for one row) of |index - target| per dimension, each ``(n_dimensions,)``."""
    target = np.array([_num(data["targets"][country].get(d)) for d in data["dimensions"]])
    errs = [np.abs(np.array([_num(r["indices"].get(d)) for d in data["dimensions"]]) - target) for r in data["rows"]
            if r["country"] == country and r["method"] == method and r.get("indices")]
    if not errs:
        return None
    errs = np.array(errs)
    return errs.mean(0), (errs.std(0, ddof=1) if len(errs) > 1 else None)  # no whisker for a single row


def _dimensions(data: dict):
    plt = _plt()
    countries = [c for c in data["countries"] if c in data["targets"]]
    fig, axes = plt.subplots(len(countries), 1, figsize=(9.5, 3.3 * len(countries) + 0.6), squeeze=False,
                             layout="constrained")
    methods = [m for m in METHODS if any(r["method"] == m for r in data["rows"])]
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(data["dimensions"]))
    for ax, country in zip(axes[:, 0], countries):
        for i, method in enumerate(methods):
            res = _abs_errors(data, country, method)
            if res is not None:
                ax.bar(x + (i - (len(methods) - 1) / 2) * width, res[0], width, yerr=res[1], capsize=2,
                       color=COLORS[method], label=LABEL.get(method, method))
        ax.set_xticks(x, data["dimensions"])
        ax.set_ylabel("|model - target|")
        ax.set_title(country)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", frameon=False)
    return fig


def _atlas(data: dict):
    """Per dimension, every country's target (x) against what each method achieved (y; the soft prompt's mean over
    seeds), with the line y = x where a country's points would lie if the method hit its target."""
    plt = _plt()
    countries = [c for c in data["countries"] if c in data["targets"]]
    dims = data["dimensions"]
    cols = min(3, len(dims))
    rows = -(-len(dims) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(13 / 3 * cols, 4.3 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[len(dims):]:
        ax.set_visible(False)
    label = len(countries) <= MANY_COUNTRIES
    for ax, (d, dim) in zip(axes.ravel(), enumerate(dims)):
        values = []
        for method in ATLAS_METHODS:
            pts = []
            for c in countries:
                vec, target = _method_indices(data, c, method), data["targets"][c].get(dim)
                if vec is not None and target is not None and not np.isnan(vec[d]):
                    pts.append((float(target), float(vec[d]), c))
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            values += xs + ys
            soft = method == "soft prompt"
            ax.scatter(xs, ys, marker=ATLAS_MARKERS[method], color=COLORS[method], s=34 if soft else 26,
                       alpha=0.9 if soft else 0.7, zorder=3 if soft else 2, label=LABEL.get(method, method))
            if soft and label:
                for x, y, c in pts:
                    ax.annotate(c, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8, color="#444")
        lo, hi = (min(0.0, min(values) - 5), max(100.0, max(values) + 5)) if values else (0.0, 100.0)
        ax.plot([lo, hi], [lo, hi], color="black", ls="--", lw=1, label="target (y = x)")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_title(dim)
        ax.set_xlabel("published score")
        ax.set_ylabel("model's index")
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False)
    fig.suptitle(f"Target against achieved, {len(countries)} countries")
    return fig


def _opinions(data: dict, country: str):
    """Similarity (1 - JSD) of the model's opinions to every country's, before (naive) and after alignment (the soft
    prompt, mean over seeds), the target's bar marked; None when the rows of ``country`` carry none."""
    by_method = {}
    target = None
    for method in ("naive", "soft prompt"):
        rows = [r[OPINIONS] for r in data["rows"] if r["country"] == country and r["method"] == method
                and isinstance(r.get(OPINIONS), dict) and r[OPINIONS].get("by_country")]
        if rows:
            names = list(rows[0]["by_country"])
            by_method[method] = {c: np.nanmean([_num(r["by_country"].get(c)) for r in rows]) for c in names}
            target = target or rows[0].get("target")
    if not by_method:
        return None
    plt = _plt()
    order = sorted(by_method.get("soft prompt") or by_method["naive"], key=lambda c: -(
        by_method.get("soft prompt") or by_method["naive"])[c])
    x = np.arange(len(order))
    width = 0.8 / len(by_method)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.28 * len(order) + 2), 4.2), layout="constrained")
    for k, (method, values) in enumerate(by_method.items()):
        bars = ax.bar(x + (k - (len(by_method) - 1) / 2) * width, [values.get(c, np.nan) for c in order], width,
                      color=COLORS[method], label=LABEL.get(method, method) + (" (before)" if method == "naive"
                                                                             else " (after)"))
        if target in order:
            bars[order.index(target)].set_edgecolor("black")
            bars[order.index(target)].set_linewidth(1.5)
    ax.set_xticks(x, order, rotation=70, ha="right", fontsize=8)
    for tick in ax.get_xticklabels():
        if tick.get_text() == target:
            tick.set_fontweight("bold")
            tick.set_color("tab:red")
    values = [v for m in by_method.values() for v in m.values() if np.isfinite(v)]
    ax.set_ylim(max(0.0, min(values) - 0.05) if values else 0.0, min(1.0, max(values) + 0.05) if values else 1.0)
    ax.set_ylabel("similarity (1 - JSD)")
    ax.set_title(f"Whom does the model sound like? Target {target or country} (bold, outlined)")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


# ---- HTML ------------------------------------------------------------------------------------------------------
def _fmt(v, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list], caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tr>{head}</tr>{body}</table>"


def _loss_table(data: dict) -> str:
    rows = []
    for country in data["countries"]:
        for method in METHODS:
            ci = mean_ci([_num(r["loss"]) for r in data["rows"] if r["country"] == country and r["method"] == method])
            if ci["n"]:
                rows.append([country, method, _fmt(ci["mean"]), f"[{_fmt(ci['low'])}, {_fmt(ci['high'])}]",
                             _fmt(ci["sd"]), ci["n"]])
    return _table(["country", "method", "mean loss", "95% CI (t)", "SD", "n"], rows)


def helps(data: dict) -> list[dict]:
    """Per country, the soft prompt's mean loss [95 % CI] against the best baseline (lowest loss of naive, persona,
    ICL and the reference mean), and a verdict: ``helps`` (lower; with several seeds the whole CI is lower),
    ``hurts`` (with several seeds the whole CI is higher), ``no clear difference`` (the CI contains the best
    baseline), ``does not help`` (one seed, not lower). Sorted from the largest gain to the largest loss."""
    out = []
    for country in data["countries"]:
        rows = [r for r in data["rows"] if r["country"] == country]
        soft = mean_ci([_num(r["loss"]) for r in rows if r["method"] == "soft prompt"])
        base = {m: np.mean([_num(r["loss"]) for r in rows if r["method"] == m])
                for m in BASELINES if any(r["method"] == m for r in rows)}
        if not soft["n"] or not base:
            continue
        best = min(base, key=base.get)
        if soft["n"] == 1:
            verdict = "helps" if soft["mean"] < base[best] else "does not help"
        else:
            verdict = ("helps" if soft["high"] < base[best] else "hurts" if soft["low"] > base[best]
                       else "no clear difference")
        out.append({"country": country, "soft_prompt": soft, "best_baseline": best, "baseline_loss": base[best],
                    "difference": soft["mean"] - base[best], "verdict": verdict})
    return sorted(out, key=lambda h: h["difference"])


def _helps_table(data: dict) -> str:
    entries = helps(data)
    if not entries:
        return ""
    rows = [[h["country"], _fmt(h["soft_prompt"]["mean"]),
             f"[{_fmt(h['soft_prompt']['low'])}, {_fmt(h['soft_prompt']['high'])}]" if h["soft_prompt"]["n"] > 1
             else "-", h["soft_prompt"]["n"], LABEL.get(h["best_baseline"], h["best_baseline"]),
             _fmt(h["baseline_loss"]), _fmt(h["difference"]), h["verdict"]] for h in entries]
    n_helps = sum(h["verdict"] == "helps" for h in entries)
    return ("<h2>Where alignment helps</h2>"
            + f"<p>The soft prompt beats the best baseline for {n_helps} of {len(entries)} countries.</p>"
            + _table(["country", "soft prompt", "95% CI (t)", "seeds", "best baseline", "its loss",
                      "soft - best", "verdict"], rows)
            + "<p class='note'>Best baseline: the lowest loss of naive, persona, ICL and the reference mean for "
              "that country. With several seeds, <i>helps</i> means the whole 95% CI of the soft prompt's loss is "
              "below it, <i>hurts</i> that it is above, <i>no clear difference</i> that it contains it; with one "
              "seed, the mean decides. Sorted from the largest gain.</p>")


def _pairs(data: dict, countries: list[str], method: str) -> tuple[list[float], list[float]]:
    """Soft prompt and ``method`` losses paired by (country, seed); a baseline with one seedless row is
    deterministic, so it pairs with every seed (the test is then one-sample against that value)."""
    soft, base = [], []
    for c in countries:
        rows = [r for r in data["rows"] if r["country"] == c]
        by_seed = {r.get("seed"): _num(r["loss"]) for r in rows if r["method"] == method}
        for r in (r for r in rows if r["method"] == "soft prompt"):
            b = by_seed.get(r.get("seed"), by_seed.get(None) if len(by_seed) == 1 else None)
            if b is not None:
                soft.append(_num(r["loss"]))
                base.append(b)
    return soft, base


def _paired_table(data: dict) -> str:
    groups = [[c] for c in data["countries"]] + ([data["countries"]] if len(data["countries"]) > 1 else [])
    rows = []
    for group in groups:
        for method in BASELINES:
            soft, base = _pairs(data, group, method)
            if len(soft) >= 2:
                t = paired_test(soft, base)
                # a deterministic baseline is one number: the test is then one-sample, against that constant
                kind = "one-sample t, Wilcoxon signed-rank" if len(set(base)) == 1 else "paired t, Wilcoxon signed-rank"
                rows.append([group[0] if len(group) == 1 else "all countries", method, t["n"], kind,
                             _fmt(t["mean_diff"]), _fmt(t["t"]), _fmt(t["p_value_t"], 4), _fmt(t["p_value_wilcoxon"], 4)])
    if not rows:
        return "<p class='note'>Tests against the baselines need at least two distinct soft-prompt runs.</p>"
    return (_table(["country", "baseline", "runs", "test", "mean diff (soft - baseline)", "t", "p (t)",
                    "p (Wilcoxon)"], rows)
            + "<p class='note'>Negative differences mean the soft prompt has the lower loss. Each run is one seed "
              "(seeds above 0 start from the text plus noise, so they are different runs). A deterministic baseline "
              "(one row per country) is a constant: the test is one-sample against it; a seeded baseline is paired "
              "by seed.</p>")


def _evaluation_tables(data: dict) -> str:
    """One table per evaluation the rows carry (any key besides the row's own): its metrics per country and method,
    means over seeds (a count, such as the number of questions, as it is)."""
    names = dict.fromkeys(k for r in data["rows"] for k in r if k not in ROW_KEYS and isinstance(r[k], dict) and r[k])
    return "".join(_evaluation_table(data, describe(name)) for name in names)


def _evaluation_table(data: dict, evaluation) -> str:
    acc = defaultdict(list)
    for r in data["rows"]:
        if r.get(evaluation.name):
            acc[(r["country"], r["method"])].append(r[evaluation.name])
    headings = evaluation.headings(next(iter(acc.values()))[0])
    rows = [[c, m, *(v[0].get(k, "-") if is_count(v[0].get(k)) else _fmt(np.mean([_num(b.get(k)) for b in v]), 3)
                     for k in headings), len(v)]
            for (c, m), v in sorted(acc.items(), key=lambda kv: (kv[0][0], METHODS.index(kv[0][1])
                                                                  if kv[0][1] in METHODS else 99))]
    return (f"<h2>{html.escape(evaluation.title)}</h2>"
            + _table(["country", "method", *headings.values(), "seeds"], rows)
            + f"<p class='note'>{html.escape(evaluation.note or 'Means over seeds.')}</p>")


def _runs_table(data: dict) -> str:
    rows = [[r["name"], r["country"], r["optimizer"], r["seed"], _fmt(_num(r["loss"])),
             int(r["history"][-1]["evaluations"]) if r["history"] else "-"] for r in data["runs"]]
    return _table(["run", "country", "optimiser", "seed", "best loss", "evaluations"], rows) if rows else ""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "country"


def write_report(folder: Path, out: Path | None = None) -> Path:
    """Write ``report.html`` (or ``out``) for an experiment or run folder, the PNG figures next to it; returns the
    HTML path."""
    folder = Path(folder)
    data = load_folder(folder)
    # the questionnaire's dimensions, in order: those the rows have indices for (else the targets')
    data["dimensions"] = list(dict.fromkeys(d for r in data["rows"] for d in (r.get("indices") or {}))) or \
        list(dict.fromkeys(d for t in data["targets"].values() for d in t))
    out = Path(out) if out is not None else folder / "report.html"
    plt = _plt()
    few = len(data["countries"]) <= MANY_COUNTRIES
    figures = [(f"radar_{_slug(c)}.png", f"Profile of {c}", _radar(data, c)) for c in data["countries"]
               if c in data["targets"] and few and data["dimensions"]]
    if data["kind"] == "experiment" and any(r["method"] in ATLAS_METHODS for r in data["rows"]):
        figures.append(("atlas.png", "Atlas: target against achieved, per dimension (soft prompt: mean over seeds)",
                        _atlas(data)))
    for c in data["countries"] if few else []:
        fig = _opinions(data, c)
        if fig is not None:
            figures.append((f"opinions_{_slug(c)}.png", f"Opinions: similarity to every country, {c}", fig))
    if any(r["history"] for r in data["runs"]):
        figures.append(("convergence.png", "Convergence: best loss against evaluations", _convergence(data)))
    if any(c in data["targets"] for c in data["countries"]) and few:
        figures.append(("dimensions.png", "Absolute error per dimension (mean over seeds, whiskers: SD)",
                        _dimensions(data)))
    parts = [f"<h1>{html.escape(data['title'])}</h1>", "<h2>Loss per method (L1 over the loss dimensions)</h2>",
             _loss_table(data), _helps_table(data), "<h2>Soft prompt against the baselines</h2>", _paired_table(data),
             _evaluation_tables(data)]
    if not few:
        parts.insert(1, f"<p class='note'>{len(data['countries'])} countries: the per-country radar charts and error "
                        "bars are left out; the atlas shows every country.</p>")
    for name, title, fig in figures:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(out.parent / name, buf.getvalue())
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{name}' src='data:image/png;base64,"
                     f"{base64.b64encode(buf.getvalue()).decode('ascii')}'>")
    parts += ["<h2>Runs</h2>", _runs_table(data)]
    for key in ("summary", "config"):
        if data.get(key):
            parts.append(f"<h2>{key.title()}</h2><pre>{html.escape(to_json(data[key]))}</pre>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(data['title'])}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    atomic_write_text(out, page)
    return out
