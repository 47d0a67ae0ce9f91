"""Terminal tables (rich) for measurement and comparison records.

On a terminal, tables fit its width and ``align`` draws a live progress bar. When stdout is a file or a pipe (a log,
``| tee``, a batch job), tables are printed whole, never cut at 80 columns, and progress is one plain line per
generation.
"""
from __future__ import annotations

import time

from rich.console import Console, ConsoleDimensions
from rich.table import Table

from .config import ConstantsKind
from .evaluations import Evaluation, get_evaluation, in_rows, is_count

LOG_WIDTH = 10_000  # columns when stdout is not a terminal: wide enough that no table or line is ever cut


class _Console(Console):
    """A rich console that, when its output is not a terminal, is as wide as :data:`LOG_WIDTH` (rich would otherwise
    use 80 columns, or the width of a terminal on stderr, and cut table cells to ``condi…``)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if self.is_terminal else ConsoleDimensions(LOG_WIDTH, size.height)

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)


console = _Console()


def _fmt(x, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_constants(constants: dict) -> None:
    vals = ", ".join(f"{d} {v:+.1f}" for d, v in constants["values"].items())
    line = f"[bold]Constants C[/] ({constants['kind']}): {vals}"
    if constants["kind"] == "anchored":
        line += f"\n  fitted from persona measurements of: {', '.join(constants.get('references', []))}"
        if constants.get("left_out"):
            line += f" (leave-one-out: without {constants['left_out']}, the target)"
    console.print(line)


def print_measurement(record: dict, items: bool = True) -> None:
    c = record["country"]
    table = Table(title=f"{c['name']} ({c['code']}) - prompt: {record['prompt']}")
    orders = list(record.get("loss_by_order") or {})
    per_order = orders if len(orders) > 1 else []   # one order asked: its line is the model's
    for col in ("dimension", "target", "model", *[f"{o} only" for o in per_order], "|diff|", "in loss"):
        table.add_column(col, justify="left" if col == "dimension" else "right")
    for dim, row in record["indices"].items():
        table.add_row(f"{dim} {row['name']}", _fmt(row["target"], 0), _fmt(row["model"]),
                      *[_fmt(row["by_order"][o]) for o in per_order], _fmt(row["abs_diff"]),
                      "yes" if row["in_loss"] else "no")
    table.caption = f"L1 loss over {','.join(record['loss_dimensions'])}: {record['loss']:.1f}"
    if per_order:
        table.caption += (" (orders pooled); each order alone: " +
                          ", ".join(f"{o} {record['loss_by_order'][o]:.1f}" for o in per_order) +
                          f"; per-order loss {record['per_order_loss']:.1f}")
    console.print(table)
    sources = {row["source"] for row in record["indices"].values() if row["source"]}
    console.print("  scores from: " + "; ".join(sorted(sources)))
    left_out = (record.get("constants") or {}).get("left_out")
    if left_out:
        vals = ", ".join(f"{d} {v:+.1f}" for d, v in record["constants"]["values"].items())
        console.print(f"  constants fitted without {left_out} (a reference country; leave-one-out): {vals}")
    if items:
        print_items(record)
    print_diagnostics(record["diagnostics"])


def print_items(record: dict) -> None:
    table = Table(title="Items: expected answer (1-5) and probability of each option")
    table.add_column("item", justify="right")
    table.add_column("E[a]", justify="right")
    for k in range(1, 6):
        table.add_column(f"p({k})", justify="right")
    extra = [k for k in ("expected_forward", "expected_reverse", "mass", "unparsed") if k in record["items"][0]]
    for k in extra:
        table.add_column(k.replace("expected_", "E "), justify="right")
    for it in record["items"]:
        cells = [str(it["item"]), f"{it['expected']:.2f}", *[f"{p:.2f}" for p in it["probs"]]]
        cells += [_fmt(it[k], 2) if k != "unparsed" else str(it[k]) for k in extra]
        table.add_row(*cells)
    console.print(table)


def print_diagnostics(diag: dict) -> None:
    r = diag["order_correlation"]
    console.print(f"  answer spread across items (SD): {diag['item_spread_sd']:.3f}   "
                  f"mean option mass: {_fmt(diag['mean_option_mass'], 2)}   "
                  f"order consistency r: {_fmt(r, 2)}"
                  + (f"   unparsable replies: {diag['unparsed_replies']}" if "unparsed_replies" in diag else ""))
    for w in diag["warnings"]:
        console.print(f"  [yellow]warning:[/] {w}")


def print_kendall(tau: dict) -> None:
    table = Table(title="Kendall tau: model country ranking vs published ranking")
    for col in ("dimension", "tau", "p", "n"):
        table.add_column(col, justify="right")
    for dim, v in tau.items():
        table.add_row(dim, _fmt(v["tau"], 2), _fmt(v["p_value"], 3), str(v["n"]))
    console.print(table)


def print_indices(indices: dict, constants: dict, questionnaire: str = "builtin:vsm2013-en") -> None:
    name = "VSM 2013" if questionnaire == "builtin:vsm2013-en" else questionnaire
    table = Table(title=f"{name} indices from item means")
    table.add_column("dimension")
    table.add_column("index", justify="right")
    for dim, v in indices.items():
        table.add_row(dim, f"{v:.1f}")
    console.print(table)
    print_constants(constants)


class AlignProgress:
    """Progress of `align`: the step (gradient) or generation (black-box), the loss, the selected prompt's
    validation loss and indices, time elapsed and left.

    On a terminal a live bar; otherwise (a log file or a pipe) one plain line per step or generation, printed whole.
    """

    def __init__(self, enabled: bool = True):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.progress = Progress(TextColumn("[bold]{task.fields[unit]} {task.fields[gen]}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[what]}  {task.fields[status]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not self.live)
        self.task = None
        self._total = 0
        self._generations = None
        self._started = time.monotonic()
        self._first = 0

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start(self, run) -> None:
        if self.enabled and run.session.config.constants.kind is ConstantsKind.ANCHORED:
            print_constants(run.session.constants_for(run.country).to_dict())
        self._total, self._first, self._started = run.total, run.state.evaluations, time.monotonic()
        gradient = run.kind == "gradient"
        self._generations = None if gradient else -(-run.total // run.config.popsize)
        self.task = self.progress.add_task("align", total=run.total, completed=run.state.evaluations,
                                           unit="step" if gradient else "gen", gen=run.state.generation,
                                           what="steps" if gradient else "evals", status="")

    def update(self, run, row: dict) -> None:
        self.progress.update(self.task, completed=row["evaluations"], gen=row["generation"], status=_status(row))
        if self.enabled and not self.live:
            console.print(progress_line(row, self._total, time.monotonic() - self._started,
                                        row["evaluations"] - self._first, self._generations),
                          markup=False, highlight=False)


def _clock(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(row: dict, total: int, elapsed: float, done_here: int, generations: int | None = None) -> str:
    """One step's (or generation's) progress as a plain line, in its own unit: gradient runs count steps
    (``step 12/40  loss 36.1  val 40.2 (step 11)  PDI 40 ... IVR 55  0:03:12 elapsed, 0:07:30 left``),
    black-box runs generations of ``generations`` and evaluations (``gen 3/20 (48/320 evals)  best 12.3 ...``).
    ``loss`` is this step's training loss, ``best`` the selected prompt's; ``val`` the selected prompt's validation
    loss and the step it comes from; the indices are the selected prompt's; time left from this process's pace
    (``-`` before the first unit done here).

    >>> row = {"generation": 3, "evaluations": 48, "loss": 13.0, "best_loss": 12.34, "best_validation_loss": "",
    ...        **{f"best_{d}": 50.0 for d in ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")}}
    >>> progress_line(row, total=320, elapsed=12.0, done_here=48, generations=20)
    'gen 3/20 (48/320 evals)  best 12.3  PDI 50 IDV 50 MAS 50 UAI 50 LTO 50 IVR 50  0:00:12 elapsed, 0:01:08 left'
    >>> row.update(evaluations=3, best_validation_loss=20.04, best_generation=1)
    >>> progress_line(row, total=40, elapsed=30.0, done_here=3)
    'step 3/40  loss 13.0  val 20.0 (step 1)  PDI 50 IDV 50 MAS 50 UAI 50 LTO 50 IVR 50  0:00:30 elapsed, 0:06:10 left'
    """
    left = _clock(elapsed / done_here * max(total - row["evaluations"], 0)) if done_here > 0 else "-"
    if generations is None:
        head = f"step {row['generation']}/{total}"
    else:
        head = f"gen {row['generation']}/{generations} ({row['evaluations']}/{total} evals)"
    return f"{head}  {_status(row, generations is None)}  {_clock(elapsed)} elapsed, {left} left"


def _status(row: dict, gradient: bool = True) -> str:
    """The losses and the selected prompt's indices of a history row."""
    text = f"loss {row['loss']:.1f}" if gradient and "loss" in row else f"best {row['best_loss']:.1f}"
    if row.get("best_validation_loss") not in ("", None):
        unit = "step" if gradient else "gen"
        text += f"  val {row['best_validation_loss']:.1f} ({unit} {row.get('best_generation', '?')})"
    return f"{text}  {_best_indices(row)}"


def _best_indices(row: dict) -> str:
    """``PDI 50 IDV 50 ...``: the selected prompt's index per dimension of a history row (its ``best_<dim>``
    columns; no dimension is named ``loss``, ``validation_loss`` or ``generation``, see :mod:`culturealign.instrument`)."""
    return " ".join(f"{k[len('best_'):]} {v:.0f}" for k, v in row.items()
                    if k.startswith("best_") and k not in ("best_loss", "best_validation_loss", "best_generation"))


def print_run(record: dict) -> None:
    best = record["best"]
    table = Table(title=f"Aligned to {record['country']['name']}: best loss {best['loss']:.1f} after "
                        f"{record['evaluations']} {'steps' if record.get('optimizer_kind') == 'gradient' else 'evaluations'} "
                        f"({record['wall_time_s']:.0f} s, {record['status']})")
    for col in ("dimension", "target", "aligned", "|diff|"):
        table.add_column(col, justify="right")
    for dim, v in best["indices"].items():
        table.add_row(dim, _fmt(v["target"], 0), _fmt(v["model"]), _fmt(v["abs_diff"]))
    table.caption = f"reference-mean predictor loss: {record['reference_mean_loss']:.1f}"
    console.print(table)
    if record.get("stopped") == "patience":   # validations (or steps, generations) without a new best
        gradient = record.get("optimizer_kind") == "gradient"
        done = (f"{record['generations']} of {record['config']['steps']} steps" if gradient
                else f"{record['evaluations']} evaluations")
        counted = ("validations" if (record.get("wordings") or {}).get("validation") else
                   "steps" if gradient else "generations")
        console.print(f"Stopped early after {done}: {record['patience']} {counted} without a new best "
                      "(--patience none runs the whole budget).")


def print_reach(result: dict) -> None:
    orders = result.get("orders") or []
    table = Table(title=f"Reach of {result['n_tokens']}-token {result['placement']} soft prompts: {result['steps']} "
                        f"gradient steps down and up per dimension, every order moved together (prompt "
                        f"{result['prompt']})")
    for col in ("dimension", "start", "lowest", "highest", "range", *[f"{o} only" for o in orders], "target",
                "target in range"):
        table.add_column(col, justify="right")
    for dim, r in result["dimensions"].items():
        yes_no = lambda v: "" if v is None else ("yes" if v else "no")  # noqa: E731
        by_order = r.get("by_order", {})
        inside = yes_no(r["reachable"])
        if r["reachable"] is not None and by_order:
            inside += " / " + ", ".join(yes_no(by_order[o]["reachable"]) for o in orders)
        table.add_row(dim, _fmt(r["start"]), _fmt(r["lowest"]), _fmt(r["highest"]), _fmt(r["highest"] - r["lowest"]),
                      *[f"{_fmt(by_order[o]['lowest'])}..{_fmt(by_order[o]['highest'])}" for o in orders],
                      _fmt(r["target"], 0), inside)
    table.caption = (f"constants: {result['constants']['kind']}; 'target in range': pooled / each order alone; a "
                     "longer run (more --steps) can only widen a range")
    console.print(table)


def print_comparison(result: dict) -> None:
    c = result["country"]
    table = Table(title=f"{c['name']}: indices and L1 loss over {','.join(result['loss_dimensions'])} "
                        f"(constants: {result['constants']['kind']})")
    table.add_column("method", no_wrap=True)
    dims = list(result["rows"][0]["indices"])  # the questionnaire's dimensions (the target row's)
    for d in dims:
        table.add_column(d, justify="right")
    table.add_column("L1 loss", justify="right")
    roles = list(result.get("wordings") or {})
    per_order = any("per_order_loss" in row for row in result["rows"])
    if per_order:
        table.add_column("per-order", justify="right")
    for role in roles:
        table.add_column(f"{role}, per-order", justify="right")
    table.add_column("order r", justify="right")
    for row in result["rows"]:
        diag = row.get("diagnostics") or {}
        model_free = row["method"] in ("target", "reference mean", "published mean")   # the same on every wording
        extra = ([_fmt(row.get("per_order_loss"))] if per_order else []) + [
            _fmt(row["loss"] if model_free and row["method"] != "target" else (row.get("wordings") or {}).get(role))
            for role in roles]
        table.add_row(row["method"], *[_fmt(row["indices"][d], 0 if row["method"] == "target" else 1) for d in dims],
                      "" if row["method"] == "target" else f"{row['loss']:.1f}", *extra,
                      _fmt(diag.get("order_correlation"), 2))
    if roles:
        table.caption = ("L1 loss: the pooled profile's (orders averaged); per-order: each order's own, averaged; "
                         + "; ".join(f"{r}: {result['wordings'][r]}" for r in roles) + " (nothing is trained there)")
    console.print(table)


def print_evaluation(result: dict, evaluation: Evaluation, per_country: bool = False) -> None:
    """The result of ``culturealign evaluate NAME``: the evaluation, its setting and the metrics of its table; with
    ``per_country``, a table of its ``per_country`` figures too (in its order; the target marked)."""
    console.print(f"[bold]{evaluation.title}[/] ({result['country']}, prompt {result['prompt']}"
                  + (f", soft prompt {result['soft_prompt']}" if result["soft_prompt"] else "") + ")")
    console.print("  " + "; ".join(f"{heading} {_metric(result[key])}"
                                   for key, heading in evaluation.headings(result).items() if key in result))
    rows = result.get("per_country")
    if per_country and isinstance(rows, dict) and rows:
        keys = list(dict.fromkeys(k for v in rows.values() for k, x in v.items() if isinstance(x, (int, float))))
        table = Table(title=f"{evaluation.title}: every country")
        for col in ("country", *keys):
            table.add_column(col, justify="left" if col == "country" else "right")
        target = result.get("target")
        for name, v in rows.items():
            table.add_row(f"{name} *" if name == target else name, *(_metric(v.get(k)) for k in keys))
        if target:
            table.caption = f"* the target, {target}"
        console.print(table)


def _metric(value) -> str:
    return str(value) if is_count(value) else _fmt(value, 3)


def print_robustness(result: dict) -> None:
    table = Table(title=f"Robustness of {result['run']} ({result['country']['name']}, constants fixed from the run)")
    dims = list(result["conditions"][0]["indices"])  # the run's questionnaire's dimensions
    for col in ("condition", *dims, "loss (soft prompt)", f"loss ({result['prompt']}, no soft prompt)", "order r"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for c in result["conditions"]:
        table.add_row(c["condition"], *[_fmt(c["indices"][d]) for d in dims], f"{c['loss']:.1f}",
                      f"{c['plain_loss']:.1f}", _fmt(c["diagnostics"]["order_correlation"], 2))
    console.print(table)


def print_experiment(results: dict) -> None:
    evaluations = [get_evaluation(name) for name in in_rows(results.get("rows", []))]
    table = Table(title="VSM L1 loss: mean [95 % CI] over seeds"
                        + "".join(f"; {e.title} {e.columns.get(e.headline, e.headline)}" for e in evaluations))
    for col in ("country", "method", "loss", *(e.title for e in evaluations), "soft prompt vs method: p (one-sample t)"):
        table.add_column(col)
    for country, entry in results["summary"].items():
        for method, v in entry["methods"].items():
            loss = v["loss"]
            ci = f"{loss['mean']:.1f}" + (f" [{loss['low']:.1f}, {loss['high']:.1f}]" if loss["n"] > 1 else "")
            means = [v.get(e.summary_key) for e in evaluations]
            test = entry["soft_prompt_vs"].get(method)
            table.add_row(country, method, ci, *(_fmt(m["mean"], 3) if m else "-" for m in means),
                          _fmt(test["p_value_t"], 3) if test else "")
    console.print(table)
