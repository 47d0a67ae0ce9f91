"""The command-line interface (a thin layer over the library)."""
from __future__ import annotations

import contextlib
import copy
import functools
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from . import terminal
from .config import DEFAULT_BACKEND, DEFAULT_LABELS, AlignConfig, SoftPromptConfig
from .errors import ConfigError, CultureAlignError
from .instrument import MAS_WEIGHT_CAT, MAS_WEIGHT_MANUAL, Questionnaire, read_means
from .io import atomic_write_json, refuse_overwrite, to_json

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure and align the cultural profile (Hofstede VSM 2013) of language models.")

_ALIGN, _SOFT = AlignConfig(country=""), SoftPromptConfig()  # the option defaults come from the configs


#: The flag that sets each configuration field (the library's errors name fields; the user sees the flag typed).
FLAGS = {
    **{f"MeasureConfig.{name}": flag for name, flag in [
        ("model", "--model"), ("device", "--device"), ("dtype", "--dtype"), ("questionnaire", "--questionnaire"),
        ("constants", "--constants"), ("dimensions", "--dimensions"), ("order", "--order"), ("labels", "--labels"),
        ("answer_prefix", "--answer-prefix"), ("answer_mode", "--answer-mode"), ("samples", "--samples"),
        ("seed", "--seed"), ("batch_size", "--batch-size"), ("max_memory_mb", "--max-memory"),
        ("backend", "--backend"), ("backend_args", "--backend-args")]},
    **{f"SoftPromptConfig.{name}": flag for name, flag in [
        ("n_tokens", "--n-tokens"), ("placement", "--placement"), ("init", "--init"), ("init_text", "--init-text"),
        ("space", "--space"), ("subspace_dim", "--subspace-dim"), ("scale", "--scale"), ("init_noise", "--init-noise")]},
    **{f"AlignConfig.{name}": flag for name, flag in [
        ("country", "--country"), ("prompt", "--prompt"), ("optimizer", "--optimizer"), ("popsize", "--popsize"),
        ("budget", "--budget"), ("seed", "--seed"), ("patience", "--patience"), ("steps", "--steps"),
        ("lr", "--lr"), ("schedule", "--schedule"), ("loss", "--loss"), ("huber_delta", "--huber-delta"), ("max_grad_norm", "--max-grad-norm"),
        ("checkpointing", "--checkpointing"), ("rows_per_step", "--rows-per-step"), ("objective", "--objective"), ("wordings", "--questionnaire"),
        ("validate", "--validate"), ("validate_every", "--validate-every")]},
    "PromptConfig.style": "--prompt", "reach.steps": "--steps", "reach.dimensions": "--dimensions",
}


def _patience(text: str) -> int | str:
    """``--patience``: a whole number as an int; ``auto``, ``none`` and anything else as given, for AlignConfig to
    read or refuse with its own message."""
    try:
        return int(text)
    except ValueError:
        return text


def _clean_errors(fn):
    """Turn every user-facing error into one line on stderr and exit code 2 (a configuration field named as the
    flag that sets it, :data:`FLAGS`)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CultureAlignError as exc:
            typer.echo(f"error: {exc.naming(FLAGS) if isinstance(exc, ConfigError) else exc}", err=True)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
    return wrapper


# ---- options shared by the measuring commands -------------------------------------------------------------------
ModelOpt = typer.Option("default", "--model", help="'default' (SmolLM2-135M-Instruct, offline), a Hugging Face id or a local folder")
DeviceOpt = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto")
DtypeOpt = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16 (bf16/fp16 for GPUs)")
QuestionnaireOpt = typer.Option(None, "--questionnaire", help="a registered instrument (vsm2013, the default) or a questionnaire JSON in the built-in schema (translation, rewording, another instrument)")
ConstantsOpt = typer.Option("anchored", "--constants", help="zero, anchored (fitted per model) or a JSON file of one number per dimension")
MasOpt = typer.Option(False, "--cat-mas-weight", help=f"use the CAT paper's second MAS weight {MAS_WEIGHT_CAT} instead of the manual's {MAS_WEIGHT_MANUAL}")
DimensionsOpt = typer.Option(None, "--dimensions", help="restrict the loss to these dimensions, e.g. LTO,IVR")
OrderOpt = typer.Option("both", "--order", help="option order: forward (1..5), reverse (5..1) or both (averaged)")
LabelsOpt = typer.Option(DEFAULT_LABELS.value, "--labels", help="option labels: letters (A-E, default) or digits (1-5)")
PrefixOpt = typer.Option("", "--answer-prefix", help="text that starts the assistant's reply, e.g. 'Answer: '")
AnswerModeOpt = typer.Option("distribution", "--answer-mode", help="distribution (next-token probabilities) or sample (generate text, CAT protocol)")
SamplesOpt = typer.Option(20, "--samples", help="replies per item in sample mode")
SeedOpt = typer.Option(0, "--seed", help="random seed")
BatchOpt = typer.Option(24, "--batch-size", help="most sequences per forward pass")
MemoryOpt = typer.Option(None, "--max-memory", help="memory limit in MB for one forward pass; batches shrink to fit")
BackendOpt = typer.Option(DEFAULT_BACKEND, "--backend", help="the engine that runs the model: hf (transformers; gradients) or vllm (pip install 'culturealign\\[vllm]'; black-box optimisers only)")
RunBackendOpt = typer.Option(None, "--backend", help="the engine that runs the model: hf or vllm (default: the run's, else hf)")
BackendArgsOpt = typer.Option(None, "--backend-args", help="options for the backend's constructor, k=v,k=v (e.g. tensor_parallel_size=2,gpu_memory_utilization=0.8)")
# ---- where the work runs (experiment: whole units; align: each population, split) -------------------------------
ExecutorOpt = typer.Option("local", "--executor", help="local (this process) or ray (Ray actors, one per GPU; pip install \"culturealign\\[ray]\")")
AddressOpt = typer.Option(None, "--address", help="with --executor ray: the cluster to join (auto, or ray://host:10001); default: a local Ray on this machine")
ActorsOpt = typer.Option(None, "--actors", help="with --executor ray: actors (default: one per GPU, else one per CPU)")
GpusPerActorOpt = typer.Option(None, "--gpus-per-actor", help="with --executor ray: GPUs per actor (default: 1 if the cluster has GPUs, else 0)")


def _config(model, device, dtype, questionnaire, constants, cat_mas, dimensions, order="both", labels=DEFAULT_LABELS.value,
            answer_prefix="", answer_mode="distribution", samples=20, seed=0, batch_size=24, max_memory=None,
            backend=DEFAULT_BACKEND, backend_args=None):
    from .config import MeasureConfig

    return MeasureConfig(model=model, device=device, dtype=dtype, backend=backend,
                         backend_args=_backend_args(backend_args) or {},
                         questionnaire=str(questionnaire) if questionnaire else None,
                         mas_weight=MAS_WEIGHT_CAT if cat_mas else MAS_WEIGHT_MANUAL, constants=constants,
                         labels=labels, answer_prefix=answer_prefix, order=order, answer_mode=answer_mode,
                         samples=samples, seed=seed, batch_size=batch_size, max_memory_mb=max_memory,
                         dimensions=dimensions or None)  # checked against the questionnaire's


def _wants_ray(executor: str, address: Optional[str], actors: Optional[int], gpus_per_actor: Optional[float]) -> bool:
    """Whether ``--executor`` asks for Ray (checked before anything loads); the Ray options without it are an error."""
    if executor not in ("local", "ray"):
        raise CultureAlignError(f"unknown executor '{executor}': use local or ray")
    if executor == "local" and (address or actors is not None or gpus_per_actor is not None):
        raise CultureAlignError("--address, --actors and --gpus-per-actor need --executor ray")
    return executor == "ray"


def _ray_executor(measure, address: Optional[str], actors: Optional[int], gpus_per_actor: Optional[float]):
    """Ray actors, each holding a Session of ``measure`` (the model, loaded once per actor)."""
    from .executors import RayExecutor
    from .session import Session

    runner = RayExecutor(functools.partial(Session, measure), actors=actors, gpus_per_actor=gpus_per_actor,
                         address=address)
    if runner.gpus_per_actor and measure.device == "cpu":
        typer.echo("note: each Ray actor holds a GPU but --device is cpu; pass --device cuda to use it", err=True)
    return runner


def _backend_args(text: Optional[str]) -> Optional[dict]:
    """``--backend-args k=v,k=v`` as a dict (None when not given)."""
    from .backends import parse_backend_args

    return None if text is None else parse_backend_args(text)


def _emit(data: dict, as_json: bool, out: Optional[Path], name: str, force: bool) -> None:
    if out is not None:
        path = out / name
        refuse_overwrite(path, force)
        atomic_write_json(path, data)
        if not as_json:
            terminal.console.print(f"wrote {path}", style="dim")
    if as_json:
        _show(data, True, None)


def _show(data: dict, as_json: bool, printer) -> None:
    """Print ``data`` as JSON, or as tables with ``printer``."""
    if as_json:
        sys.stdout.write(to_json(data) + "\n")
    else:
        printer(data)


@app.command()
@_clean_errors
def countries(as_json: bool = typer.Option(False, "--json", help="print JSON"),
              questionnaire: Optional[str] = typer.Option(None, "--questionnaire", help="the targets of this instrument (a registered name or a file; default Hofstede's published scores)")) -> None:
    """Every country with published scores (or an instrument's targets), its dimensions and the codes it answers to."""
    from .targets import MATRIX_SOURCE, targets_for

    targets = targets_for(questionnaire)
    rows = targets.countries
    if as_json:
        sys.stdout.write(to_json([c.to_dict() | {"dimensions": c.dimensions} for c in rows]) + "\n")
        return
    from rich.table import Table

    what = "(Hofstede 2015-08-16 + supplement)" if targets.source == MATRIX_SOURCE else f"({targets.source})"
    table = Table(title=f"{len(rows)} countries and regions {what}")
    dims = targets.dimensions
    for col in ("name", "codes", *dims):
        table.add_column(col, justify="left" if col in ("name", "codes") else "right")
    for c in rows:
        codes = "/".join(x for x in (c.code, c.iso2, c.iso3) if x)
        cells = [(f"{c.scores[d]:g}" + ("*" if c.sources[d].startswith("supplement") else "")) if d in c.scores
                 else "-" for d in dims]
        table.add_row(c.name, codes, *cells)
    table.caption = ("* from the supplement (secondary sources, see `--json` for each score's source); "
                     "- not published")
    terminal.console.print(table)


@app.command()
@_clean_errors
def measure(
    country: List[str] = typer.Option(None, "--country", "-c", help="target country (repeat for several)"),
    prompt: str = typer.Option("persona", "--prompt", help="naive, persona or icl"),
    model: str = ModelOpt, device: str = DeviceOpt, dtype: str = DtypeOpt,
    questionnaire: Optional[str] = QuestionnaireOpt, constants: str = ConstantsOpt, cat_mas_weight: bool = MasOpt,
    dimensions: Optional[str] = DimensionsOpt, order: str = OrderOpt, labels: str = LabelsOpt,
    answer_prefix: str = PrefixOpt, answer_mode: str = AnswerModeOpt, samples: int = SamplesOpt, seed: int = SeedOpt,
    batch_size: int = BatchOpt, max_memory: Optional[float] = MemoryOpt,
    backend: str = BackendOpt, backend_args: Optional[str] = BackendArgsOpt,
    soft_prompt: Optional[Path] = typer.Option(None, "--soft-prompt", help="a soft prompt folder written by `align`"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object (schema in docs/commands.md)"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write measurement.json into this folder"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output file"),
    items: bool = typer.Option(True, "--items/--no-items", help="print the per-item table"),
) -> None:
    """Ask the model the questionnaire's items (the VSM 2013's 24) and compare its indices with a country's scores."""
    from .measure import measure_countries

    cfg = _config(model, device, dtype, questionnaire, constants, cat_mas_weight, dimensions, order, labels,
                  answer_prefix, answer_mode, samples, seed, batch_size, max_memory, backend, backend_args)
    result = measure_countries(cfg, country or [], prompt, soft_prompt,
                               before_load=lambda: out is not None and refuse_overwrite(out / "measurement.json", force))
    records = result["results"]
    if not as_json:
        terminal.print_constants(result["constants"])
        for r in records:
            terminal.print_measurement(r, items)
        if result["kendall_tau"]:
            terminal.print_kendall(result["kendall_tau"])
    _emit(result, as_json, out, "measurement.json", force)


@app.command()
@_clean_errors
def indices(
    means: Path = typer.Option(..., "--means", help="JSON or CSV file with the item means (1-5), 24 for the VSM 2013"),
    constants: str = typer.Option("zero", "--constants", help="zero, anchored (needs --model) or a JSON file of one number per dimension"),
    cat_mas_weight: bool = MasOpt, questionnaire: Optional[str] = QuestionnaireOpt,
    model: str = ModelOpt, device: str = DeviceOpt, dtype: str = DtypeOpt,
    backend: str = BackendOpt, backend_args: Optional[str] = BackendArgsOpt,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The indices (the VSM 2013's six) from item means (e.g. human survey answers)."""
    q = Questionnaire.load(questionnaire).with_mas_weight(MAS_WEIGHT_CAT if cat_mas_weight else MAS_WEIGHT_MANUAL)
    item_means = read_means(means, q.n_items)
    from . import constants as consts
    from .session import Session

    c = consts.resolve(constants, lambda: Session(_config(
        model, device, dtype, questionnaire, constants, cat_mas_weight, None, backend=backend,
        backend_args=backend_args)).resolve_constants(), q.dimensions)
    values = dict(zip(q.dimensions, map(float, q.indices(item_means, c.values))))
    mas = q.formulas.get("MAS", [])
    result = {"means": item_means.tolist(), "indices": values, "constants": c.to_dict(),
              "mas_weight": mas[1][0] if len(mas) > 1 else None, "questionnaire": q.source}
    _show(result, as_json, lambda r: terminal.print_indices(r["indices"], r["constants"], r["questionnaire"]))


@app.command()
@_clean_errors
def align(
    country: Optional[str] = typer.Option(None, "--country", "-c", help="target country (not needed with --resume)"),
    out: Path = typer.Option(..., "--out", help="run folder (never overwritten without --force)"),
    prompt: str = typer.Option("naive", "--prompt", help="prompt style the soft prompt is trained with: naive, persona or icl"),
    optimizer: str = typer.Option(_ALIGN.optimizer, "--optimizer", help="cma (CMA-ES), de (differential evolution, the paper's), random (black-box), or adam (gradients through the model)"),
    popsize: int = typer.Option(_ALIGN.popsize, "--popsize", help="candidates per generation"),
    budget: int = typer.Option(_ALIGN.budget, "--budget", help="candidate evaluations in total"),
    patience: str = typer.Option(_ALIGN.patience, "--patience", help="stop after N validations without a new best (without validation: N steps or generations); auto: 3 when validating; none: run the whole budget"),
    steps: int = typer.Option(_ALIGN.steps, "--steps", help="adam: gradient steps (one forward + backward pass over every item each)"),
    lr: float = typer.Option(_ALIGN.lr, "--lr", help="adam: learning rate"),
    schedule: str = typer.Option(_ALIGN.schedule, "--schedule", help="adam: constant, cosine (down to lr/10) or warmup (up from lr/10 over the first tenth of the steps, then cosine)"),
    loss: str = typer.Option(_ALIGN.loss, "--loss", help="adam: the loss it descends, l1 or huber (the reported loss is always L1)"),
    huber_delta: float = typer.Option(_ALIGN.huber_delta, "--huber-delta", help="adam with --loss huber: quadratic within this many index points"),
    max_grad_norm: Optional[float] = typer.Option(_ALIGN.max_grad_norm, "--max-grad-norm", help="adam: clip the gradient to this norm before each step (0: no clipping)"),
    checkpointing: bool = typer.Option(False, "--checkpointing", help="adam: recompute activations in the backward pass (less memory, more time)"),
    rows_per_step: Optional[int] = typer.Option(None, "--rows-per-step", help="adam: a stochastic step over this many rows, whole (wording, order) blocks drawn without replacement (a multiple of the item count, 24; per-order objective); default every row"),
    objective: str = typer.Option(_ALIGN.objective, "--objective", help="per-order (each option order and wording scored on its own, losses averaged) or pooled (expected answers averaged over the orders first)"),
    validate: str = typer.Option(_ALIGN.validate, "--validate", help="the wording that picks the saved prompt (a registered name or a file of the same instrument): auto (vsm2013-validation for the VSM 2013), or none (keep the prompt best on training)"),
    validate_every: int = typer.Option(_ALIGN.validate_every, "--validate-every", help="score the validation wording every N steps (or generations), and at the last"),
    n_tokens: int = typer.Option(_SOFT.n_tokens, "--n-tokens", help="virtual tokens in the soft prompt"),
    placement: str = typer.Option(_SOFT.placement, "--placement", help="prefix (before everything; exported as a PEFT adapter) or suffix (after the item text; about 4.6x cheaper on CPU, less leverage)"),
    init: str = typer.Option(_SOFT.init, "--init", help="text (embeddings of --init-text), vocab (random vocabulary rows) or random"),
    init_text: Optional[str] = typer.Option(None, "--init-text", help="initialisation text (default: 'You are a person from <country>.')"),
    space: str = typer.Option(_SOFT.space, "--space", help="full (every embedding coordinate) or subspace (random projection)"),
    subspace_dim: int = typer.Option(_SOFT.subspace_dim, "--subspace-dim", help="dimension of the random subspace"),
    scale: float = typer.Option(_SOFT.scale, "--scale", help="perturbation scale, in units of the embedding matrix's standard deviation"),
    init_noise: float = typer.Option(_SOFT.init_noise, "--init-noise", help="with a text start: seeds above 0 add Gaussian noise of this many embedding SDs (seed 0 starts at the text)"),
    model: str = ModelOpt, device: str = DeviceOpt, dtype: str = DtypeOpt,
    questionnaire: Optional[List[str]] = typer.Option(None, "--questionnaire", help="the training wording (a registered instrument or a questionnaire JSON); give it again to train on several wordings of one instrument, e.g. --questionnaire vsm2013 --questionnaire vsm2013-reworded"),
    constants: str = ConstantsOpt, cat_mas_weight: bool = MasOpt,
    dimensions: Optional[str] = DimensionsOpt, order: str = OrderOpt, labels: str = LabelsOpt,
    answer_prefix: str = PrefixOpt, seed: int = SeedOpt, batch_size: int = BatchOpt,
    max_memory: Optional[float] = MemoryOpt, backend: str = BackendOpt, backend_args: Optional[str] = BackendArgsOpt,
    executor: str = ExecutorOpt, address: Optional[str] = AddressOpt, actors: Optional[int] = ActorsOpt,
    gpus_per_actor: Optional[float] = GpusPerActorOpt,
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in --out (its saved configuration is used)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing run folder"),
    as_json: bool = typer.Option(False, "--json", help="print run.json at the end"),
) -> None:
    """Learn a soft prompt that aligns the model's indices to a country (the paper's method)."""
    from .config import AlignConfig
    from .align import align as run_align, check_executor, read_checkpoint
    from .config import SoftPromptConfig
    from .targets import targets_for

    use_ray = _wants_ray(executor, address, actors, gpus_per_actor)
    if resume:
        config = None
    elif country is None:
        raise CultureAlignError("give the target with --country (see `culturealign countries`)")
    else:
        first, *more = questionnaire or [None]
        targets = targets_for(first)
        targets.check([targets.lookup(country)], dimensions)
        soft = SoftPromptConfig(n_tokens=n_tokens, placement=placement, init=init, init_text=init_text, space=space,
                                subspace_dim=subspace_dim, scale=scale, init_noise=init_noise)
        mcfg = _config(model, device, dtype, first, constants, cat_mas_weight, dimensions, order, labels,
                       answer_prefix, seed=seed, batch_size=batch_size, max_memory=max_memory, backend=backend,
                       backend_args=backend_args)
        config = AlignConfig(country=country, prompt=prompt, optimizer=optimizer, popsize=popsize, budget=budget,
                             seed=seed, patience=_patience(patience), steps=steps, lr=lr, schedule=schedule, loss=loss,
                             huber_delta=huber_delta, max_grad_norm=max_grad_norm or None,
                             checkpointing=checkpointing, rows_per_step=rows_per_step, objective=objective,
                             wordings=more,
                             validate=None if validate.lower() == "none" else validate,
                             validate_every=validate_every, soft=soft, measure=mcfg)
    runner = None
    if use_ray:  # each population split over Ray actors (black-box optimisers); the loop and run folder stay here
        run_config = config or read_checkpoint(out)[0]
        check_executor(run_config, executor)
        runner = _ray_executor(run_config.measure, address, actors, gpus_per_actor)
    with runner or contextlib.nullcontext(), terminal.AlignProgress(enabled=not as_json) as progress:
        try:
            record = run_align(config, out, resume=resume, force=force, on_generation=progress.update,
                               on_start=progress.start, executor=runner)
        except KeyboardInterrupt:
            typer.echo(f"interrupted: the best prompt so far and a checkpoint are in {out}; continue with "
                       f"`culturealign align --out {out} --resume`", err=True)
            raise typer.Exit(130)
    _show(record, as_json, terminal.print_run)


@app.command()
@_clean_errors
def reach(
    country: Optional[str] = typer.Option(None, "--country", "-c", help="show this country's scores next to each range (and start from its persona text)"),
    steps: int = typer.Option(10, "--steps", help="gradient steps per dimension and direction"),
    lr: float = typer.Option(_ALIGN.lr, "--lr", help="Adam's learning rate"),
    prompt: str = typer.Option("naive", "--prompt", help="prompt style: naive, persona or icl"),
    n_tokens: int = typer.Option(_SOFT.n_tokens, "--n-tokens", help="virtual tokens in the soft prompt"),
    placement: str = typer.Option(_SOFT.placement, "--placement", help="prefix or suffix"),
    init: str = typer.Option(_SOFT.init, "--init", help="text, vocab or random"),
    init_text: Optional[str] = typer.Option(None, "--init-text", help="initialisation text"),
    checkpointing: bool = typer.Option(False, "--checkpointing", help="recompute activations in the backward pass"),
    model: str = ModelOpt, device: str = DeviceOpt, dtype: str = DtypeOpt,
    questionnaire: Optional[str] = QuestionnaireOpt, constants: str = ConstantsOpt, cat_mas_weight: bool = MasOpt,
    dimensions: Optional[str] = typer.Option(None, "--dimensions", help="only these dimensions, e.g. IDV,MAS"),
    order: str = OrderOpt, labels: str = LabelsOpt, answer_prefix: str = PrefixOpt, seed: int = SeedOpt,
    batch_size: int = BatchOpt, max_memory: Optional[float] = MemoryOpt,
    backend: str = BackendOpt, backend_args: Optional[str] = BackendArgsOpt,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write reach.json into this folder"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output file"),
) -> None:
    """What soft prompts can do on this model at all: push each index down and up with gradients, report the range."""
    from .gradient import reach as run_reach
    from .session import Session
    from .config import parse_dimensions
    from .targets import targets_for

    dims = parse_dimensions(dimensions, Questionnaire.load(questionnaire).dimensions, "reach.dimensions")
    target = targets_for(questionnaire).lookup(country) if country else None
    soft = SoftPromptConfig(n_tokens=n_tokens, placement=placement, init=init, init_text=init_text)
    cfg = _config(model, device, dtype, questionnaire, constants, cat_mas_weight, None, order, labels,
                  answer_prefix, seed=seed, batch_size=batch_size, max_memory=max_memory, backend=backend,
                  backend_args=backend_args)
    if out is not None:
        refuse_overwrite(out / "reach.json", force)
    session = Session(cfg)
    say = None if as_json else (lambda dim, direction, step, value: terminal.console.print(
        f"[dim]{dim} {direction:4s} step {step:3d}: {value:7.1f}[/]"))
    result = run_reach(session, target, prompt, soft, steps, lr, dims, seed, checkpointing, on_step=say)
    result["provenance"] = session.provenance()
    if not as_json:
        terminal.print_reach(result)
    _emit(result, as_json, out, "reach.json", force)


@app.command()
@_clean_errors
def compare(
    runs: List[Path] = typer.Argument(None, help="run folders written by `align` (soft prompts to compare)"),
    country: Optional[str] = typer.Option(None, "--country", "-c", help="target country (default: the first run's)"),
    model: Optional[str] = typer.Option(None, "--model", help="default: the model of the first run"),
    device: str = DeviceOpt, dtype: str = DtypeOpt,
    constants: Optional[str] = typer.Option(None, "--constants", help="default: the constants setting of the first run"),
    dimensions: Optional[str] = typer.Option(None, "--dimensions", help="restrict the loss to these dimensions, e.g. LTO,IVR (default: the first run's, else all six)"),
    backend: Optional[str] = RunBackendOpt, backend_args: Optional[str] = BackendArgsOpt,
    test: bool = typer.Option(False, "--test", help="also score every prompt on the shipped test wording (vsm2013-test: for reporting only, never for choosing)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write comparison.json into this folder"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output file"),
) -> None:
    """The paper's comparison for one country: target, naive, persona, ICL, reference mean and soft prompts."""
    from .comparison import compare_runs

    settings = {"model": model, "constants": constants, "device": device, "dtype": dtype, "dimensions": dimensions,
                "backend": backend, "backend_args": _backend_args(backend_args)}
    result = compare_runs(runs or [], country, settings, test=test,
                          on_session=lambda: out is not None and refuse_overwrite(out / "comparison.json", force))
    if not as_json:
        terminal.print_comparison(result)
    _emit(result, as_json, out, "comparison.json", force)


@app.command()
@_clean_errors
def generate(
    text: Optional[str] = typer.Argument(None, help="the message; leave out for an interactive chat"),
    soft_prompt: Optional[Path] = typer.Option(None, "--soft-prompt", help="a run folder written by `align`"),
    model: Optional[str] = typer.Option(None, "--model", help="default: the soft prompt's model, else 'default'"),
    device: str = DeviceOpt, dtype: str = DtypeOpt, backend: str = BackendOpt,
    backend_args: Optional[str] = BackendArgsOpt,
    max_new_tokens: int = typer.Option(128, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy"),
    seed: int = SeedOpt,
) -> None:
    """Talk to the model with a learned soft prompt in place."""
    from .softprompt import load_with_model

    loaded, sp = load_with_model(soft_prompt, model, device, dtype, backend, _backend_args(backend_args))
    sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
    if text is not None:
        typer.echo(loaded.generate(None, text, sp, **sampling))
        return
    typer.echo("Interactive chat (each message is answered on its own; empty line or Ctrl-D to quit).")
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            break
        if not line:
            break
        typer.echo(loaded.generate(None, line, sp, **sampling))


class _EvaluateGroup(TyperGroup):
    """``evaluate NAME``: every registered evaluation (:mod:`culturealign.evaluations`), with one set of options,
    and the run-level checks written here (robustness); an unknown name is one error listing them all."""

    def list_commands(self, ctx) -> list[str]:
        from .evaluations import EVALUATIONS

        return [*sorted(EVALUATIONS), *(name for name in self.commands if name not in EVALUATIONS)]

    def get_command(self, ctx, name: str):
        from .evaluations import EVALUATIONS, get_evaluation

        if name in self.commands or name not in EVALUATIONS:
            return self.commands.get(name)
        command = copy.copy(typer.main.get_command(_evaluation_app))  # the same options, its own name and help
        command.name = name
        try:
            command.help = get_evaluation(name).description or name
        except CultureAlignError as exc:  # still listed; running it prints this error
            command.help = f"(not available here: {exc})"
        return command

    def resolve_command(self, ctx, args: list[str]):
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            typer.echo(f"error: unknown evaluation {args[0]!r:.40}: use one of {', '.join(self.list_commands(ctx))} "
                       "(or register one with culturealign.evaluations.register_evaluation)", err=True)
            raise typer.Exit(2)
        return super().resolve_command(ctx, args)


evaluate_app = typer.Typer(cls=_EvaluateGroup, no_args_is_help=True,
                           help="Held-out checks of a (soft-prompted) model: the registered evaluations, and robustness.")
app.add_typer(evaluate_app, name="evaluate")
_evaluation_app = typer.Typer(add_completion=False)  # the one command behind every registered evaluation's name


@_evaluation_app.command()
@_clean_errors
def registered_evaluation(
    ctx: typer.Context,
    country: str = typer.Option("all", "--country", "-c", help="items about this country, or all"),
    soft_prompt: Optional[Path] = typer.Option(None, "--soft-prompt", help="a run folder written by `align`"),
    prompt: str = typer.Option("naive", "--prompt", help="naive, persona or icl (persona/icl need a country)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="first N items (questions) only"),
    model: Optional[str] = typer.Option(None, "--model", help="default: the soft prompt's model, else 'default'"),
    device: str = DeviceOpt, dtype: str = DtypeOpt, batch_size: int = BatchOpt,
    backend: str = BackendOpt, backend_args: Optional[str] = BackendArgsOpt,
    data: Optional[Path] = typer.Option(None, "--data", help="read the items from this file instead of the shipped ones (opinions: the full GlobalOpinionQA CSV or JSON)"),
    all_countries: bool = typer.Option(False, "--all-countries", help="also print every country's figures (opinions: all countries ranked by similarity)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Run the registered evaluation this command is named after (see `culturealign evaluate --help`)."""
    from .config import PromptStyle
    from .evaluations import get_evaluation, run_evaluation
    from .config import MeasureConfig
    from .session import Session
    from .softprompt import load_with_model
    from .targets import lookup

    name = ctx.info_name  # the name it was called by
    evaluation = get_evaluation(name, data)
    where = None if country == "all" else country
    if PromptStyle.parse(prompt, "--prompt", "prompt style") != PromptStyle.NAIVE:
        if where is None:
            raise CultureAlignError(f"--prompt {prompt} needs a --country (the persona's)")
        lookup(country)
    evaluation.check(where)  # before the model loads
    loaded, sp = load_with_model(soft_prompt, model, device, dtype, backend, _backend_args(backend_args))
    session = Session(MeasureConfig(model=loaded.model_id, device=device, dtype=dtype, backend=backend,
                                    batch_size=batch_size), backend=loaded)
    result = {"country": country, "prompt": prompt, "soft_prompt": str(soft_prompt) if soft_prompt else None,
              "model": loaded.model_id, **run_evaluation(name, session, where, prompt, sp, limit, data)}
    _show(result, as_json, lambda r: terminal.print_evaluation(r, evaluation, all_countries))


@evaluate_app.command("robustness")
@_clean_errors
def evaluate_robustness(
    soft_prompt: Path = typer.Option(..., "--soft-prompt", help="a run folder written by `align`"),
    questionnaire: Optional[str] = typer.Option(None, "--questionnaire", help="another questionnaire with the run's dimensions (a rewording, a translation: a file or a registered name), e.g. vsm2013-test (the shipped test wording) or vsm2013-reworded"),
    device: str = DeviceOpt, dtype: str = DtypeOpt,
    backend: Optional[str] = RunBackendOpt, backend_args: Optional[str] = BackendArgsOpt,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The aligned profile and loss under another questionnaire and each option order, next to the training loss."""
    from .comparison import robustness

    _show(robustness(soft_prompt, questionnaire, device, dtype, backend, _backend_args(backend_args)), as_json,
          terminal.print_robustness)


@app.command()
@_clean_errors
def experiment(
    countries: str = typer.Option("US,CN,IN,SA", "--countries", help="comma-separated target countries, or all (every country with the loss dimensions)"),
    seeds: int = typer.Option(5, "--seeds", help="alignment seeds per country (0..N-1)"),
    out: Path = typer.Option(..., "--out", help="experiment folder"),
    budget: int = typer.Option(_ALIGN.budget, "--budget", help="candidate evaluations per alignment run"),
    popsize: int = typer.Option(_ALIGN.popsize, "--popsize"),
    optimizer: str = typer.Option(_ALIGN.optimizer, "--optimizer", help="cma, de, random (black-box) or adam (gradients)"),
    steps: int = typer.Option(_ALIGN.steps, "--steps", help="adam: gradient steps per alignment run"),
    lr: float = typer.Option(_ALIGN.lr, "--lr", help="adam: learning rate"),
    max_grad_norm: Optional[float] = typer.Option(_ALIGN.max_grad_norm, "--max-grad-norm", help="adam: clip the gradient to this norm before each step (0: no clipping)"),
    objective: str = typer.Option(_ALIGN.objective, "--objective", help="per-order or pooled (see `align --help`)"),
    validate: str = typer.Option(_ALIGN.validate, "--validate", help="the wording that picks each run's saved prompt: auto, none or a wording (see `align --help`)"),
    validate_every: int = typer.Option(_ALIGN.validate_every, "--validate-every", help="score the validation wording every N steps (or generations)"),
    patience: str = typer.Option(_ALIGN.patience, "--patience", help="stop each run after N validations without a new best; auto: 3 when validating; none: every run spends its whole budget (equal compute)"),
    n_tokens: int = typer.Option(_SOFT.n_tokens, "--n-tokens"), placement: str = typer.Option(_SOFT.placement, "--placement"),
    space: str = typer.Option(_SOFT.space, "--space"), subspace_dim: int = typer.Option(_SOFT.subspace_dim, "--subspace-dim"),
    scale: float = typer.Option(_SOFT.scale, "--scale"),
    evaluations: Optional[str] = typer.Option(None, "--evaluations", help="the evaluations each method is measured on, and items per country: name:N,name (no N or all: every item; none: no evaluations); default culturalbench:20 (see `culturealign evaluate --help`)"),
    culturalbench_limit: Optional[int] = typer.Option(None, "--culturalbench-limit", help="CulturalBench questions per country (0: skip; -1: all): the same as --evaluations culturalbench:N"),
    model: str = ModelOpt, device: str = DeviceOpt, dtype: str = DtypeOpt, constants: str = ConstantsOpt,
    dimensions: Optional[str] = DimensionsOpt, questionnaire: Optional[str] = QuestionnaireOpt,
    backend: str = BackendOpt, backend_args: Optional[str] = BackendArgsOpt,
    executor: str = ExecutorOpt, address: Optional[str] = AddressOpt, actors: Optional[int] = ActorsOpt,
    gpus_per_actor: Optional[float] = GpusPerActorOpt,
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted experiment in --out (its saved configuration is used)"),
    force: bool = typer.Option(False, "--force", help="start over in an existing folder"),
    as_json: bool = typer.Option(False, "--json", help="print results.json at the end"),
) -> None:
    """Every method x country x seed on the VSM loss and the evaluations (CulturalBench), with 95 % CIs and one-sample tests against each baseline."""
    from .config import AlignConfig
    from .executors import LocalExecutor
    from .experiment import ExperimentConfig, read_config, run_experiment
    from .session import Session
    from .config import SoftPromptConfig
    from .targets import targets_for

    use_ray = _wants_ray(executor, address, actors, gpus_per_actor)
    if resume:
        config = read_config(out)
    else:
        targets = targets_for(questionnaire).select(countries, dimensions)
        mcfg = _config(model, device, dtype, questionnaire, constants, False, dimensions, backend=backend,
                       backend_args=backend_args)
        soft = SoftPromptConfig(n_tokens=n_tokens, placement=placement, space=space, subspace_dim=subspace_dim,
                                scale=scale)
        acfg = AlignConfig(country="", optimizer=optimizer, popsize=popsize, budget=budget, steps=steps, lr=lr,
                           max_grad_norm=max_grad_norm or None, objective=objective,
                           validate=None if validate.lower() == "none" else validate, validate_every=validate_every,
                           patience=_patience(patience), soft=soft, measure=mcfg)
        config = ExperimentConfig(countries=[t.name for t in targets], seeds=seeds, align=acfg,
                                  evaluations=_evaluations(evaluations, culturalbench_limit))
    say = (lambda msg: terminal.console.print(f"[dim]{msg}[/]")) if not as_json else None
    runner = (_ray_executor(config.align.measure, address, actors, gpus_per_actor) if use_ray
              else LocalExecutor(setup=functools.partial(Session, config.align.measure)))
    with runner:
        try:
            results = run_experiment(config, out, resume=resume, force=force, on_unit=say, executor=runner)
        except KeyboardInterrupt:
            typer.echo(f"interrupted: finished units are in {out / 'results.json'}; continue with "
                       f"`culturealign experiment --out {out} --resume`", err=True)
            raise typer.Exit(130)
    _show(results, as_json, terminal.print_experiment)
    if not as_json:
        terminal.console.print(f"results in {out / 'results.json'}; figures: `culturealign report {out}`")


def _evaluations(text: Optional[str], culturalbench_limit: Optional[int]) -> dict:
    """``--evaluations`` (default: culturalbench:20), with ``--culturalbench-limit N`` its older spelling."""
    from .evaluations import DEFAULT_EVALUATIONS, parse_evaluations

    chosen = dict(DEFAULT_EVALUATIONS) if text is None else parse_evaluations(text)
    if culturalbench_limit is not None:
        if text is not None and "culturalbench" in chosen:
            raise CultureAlignError("give the CulturalBench limit once: --evaluations culturalbench:N or "
                                    "--culturalbench-limit N")
        chosen["culturalbench"] = None if culturalbench_limit < 0 else culturalbench_limit
    return chosen


@app.command()
@_clean_errors
def report(
    folder: Path = typer.Argument(..., help="an experiment folder or a run folder"),
    out: Optional[Path] = typer.Option(None, "--out", help="where to write report.html and the PNG figures (default: the folder)"),
) -> None:
    """A self-contained HTML report with figures (radar charts, convergence, per-dimension errors) and tables."""
    from .report import write_report

    if not folder.is_dir():
        raise CultureAlignError(f"{folder} is not a folder")
    path = write_report(folder, out)
    terminal.console.print(f"wrote {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
