"""Evaluations: benchmarks of a (soft-prompted) model beyond the survey, behind one small protocol, found by name.

An evaluation (CulturalBench-Hard, and the next ones) is an :class:`Evaluation` whose :meth:`~Evaluation.run` takes
the loaded model (a :class:`~culturealign.session.Session`), a country, the system message of the prompt style and
optionally a soft prompt and a limit, and returns a dict of metrics, one of them its ``headline``. It is registered by
name as a backend is (:mod:`culturealign.backends`): the registry holds ``"module:Class"`` and imports the module only
when the evaluation is used. ``culturealign evaluate <name>`` and ``culturealign experiment --evaluations name:N``
read it; each experiment row records an evaluation's metrics under its name.

>>> sorted(EVALUATIONS)
['culturalbench', 'opinions']
>>> get_evaluation("culturalbench").headline
'question_accuracy'
>>> get_evaluation("mmlu")
Traceback (most recent call last):
culturealign.errors.CultureAlignError: unknown evaluation 'mmlu': use one of culturalbench, opinions (or register one with culturealign.evaluations.register_evaluation)

Adding one is one class and one line (a toy, run here on the tiny test model)::

>>> @register_evaluation("persona-named")
... class PersonaNamed(Evaluation):
...     title, headline = "The prompt names the country", "named"
...
...     def run(self, session, country, system, soft_prompt=None, limit=None):
...         return {"named": float(country in (system or ""))}
>>> from culturealign.backends.hf import HFBackend
>>> from culturealign.models import LoadedModel
>>> from culturealign.session import MeasureConfig, Session
>>> tok = make_tokenizer()
>>> session = Session(MeasureConfig(), backend=HFBackend(LoadedModel(make_model(tok), tok, "tiny", "tiny")))
>>> [run_evaluation("persona-named", session, "China", style) for style in ("naive", "persona")]
[{'named': 0.0}, {'named': 1.0}]
>>> del EVALUATIONS["persona-named"]
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

from .errors import CultureAlignError
from .registry import Registry

if TYPE_CHECKING:  # the model and soft prompts import torch; this module stays light
    from .session import Session
    from .softprompt import SoftPrompt

#: name -> "module:Class" (not imported yet) or the class itself
EVALUATIONS = Registry("evaluation", "culturealign.evaluations.register_evaluation", {
    "culturalbench": "culturealign.culturalbench:CulturalBench",
    "opinions": "culturealign.opinions:Opinions",
})

#: what an experiment runs unless told otherwise: name -> items per country
DEFAULT_EVALUATIONS: dict[str, int | None] = {"culturalbench": 20}

#: the keys of an experiment row that are not evaluations (an evaluation's metrics sit under its name)
ROW_KEYS = ("country", "method", "seed", "loss", "per_order_loss", "indices")


class NotCovered(CultureAlignError):
    """Raised by :meth:`Evaluation.check` (or ``run``) when it has nothing to ask about the country: an experiment
    records null for that evaluation, ``culturealign evaluate`` prints the message."""


class Evaluation:
    """The protocol: subclass it, set ``headline`` and write :meth:`run`.

    name: the registry's name for it (set when it is looked up); the key of its metrics in an experiment row.
    title: what tables call it (default: the name). description: one line, for ``culturealign evaluate --help``.
    headline: the metric that experiment summaries (mean and 95 % CI per method) and terminal tables lead with.
    columns: ``{metric: heading}``, the metrics an experiment row keeps and the report shows, in order (default:
    every number :meth:`run` returns, under its own name). note: a footnote under its table in the report.
    """

    name: str = ""
    title: str = ""
    description: str = ""
    headline: str = ""
    columns: dict[str, str] = {}
    note: str = ""

    def use_data(self, path) -> None:
        """Read the items from the file ``path`` (``culturealign evaluate NAME --data PATH``) instead of the shipped
        ones; by default an evaluation has no other file to read."""
        raise CultureAlignError(f"evaluation '{self.name}' reads only its own items: leave out --data")

    def check(self, country: str | None) -> None:
        """Called before the model loads: raise :class:`NotCovered` if there are no items about ``country``
        (default: nothing is checked here)."""

    def run(self, session: Session, country: str | None, system: str | None, soft_prompt: SoftPrompt | None = None,
            limit: int | None = None) -> dict[str, Any]:
        """The metrics (JSON-ready, ``headline`` among them) of the model in ``session`` on the items about ``country``
        (a name or code as the user gave it; None: every country), asked with the system message ``system`` (None:
        the chat template's own) and ``soft_prompt`` in place (placed as it says), on the first ``limit`` items
        (None: all). :meth:`check` has passed for ``country``."""
        raise NotImplementedError

    def headings(self, metrics: dict) -> dict[str, str]:
        """``{metric: heading}`` of what tables show of ``metrics``: ``columns``, or every number in ``metrics``."""
        if self.columns:
            return dict(self.columns)
        return {k: k for k, v in metrics.items() if isinstance(v, numbers.Real)}

    def row(self, metrics: dict) -> dict:
        """What an experiment row keeps of :meth:`run`'s metrics."""
        return {k: metrics[k] for k in self.headings(metrics) if k in metrics}

    @property
    def summary_key(self) -> str:
        """The key of its headline in an experiment's summary, e.g. ``culturalbench_question_accuracy``."""
        return f"{self.name}_{self.headline}"


def register_evaluation(name: str, target: str | type | None = None):
    """Register an :class:`Evaluation` subclass under ``name``: ``target`` is ``"module:Class"`` (imported only when
    the evaluation is used) or the class. Without ``target`` it returns a class decorator::

        register_evaluation("blend", "my_package.blend:BLEnD")     # lazy

        @register_evaluation("blend")                              # or on the class itself
        class BLEnD(Evaluation): ...
    """
    if name in ROW_KEYS:
        raise CultureAlignError(f"an evaluation cannot be named '{name}': experiment rows use that key "
                                f"({', '.join(ROW_KEYS)} are taken)")
    return EVALUATIONS.register(name, target)


def get_evaluation(name: str, data=None) -> Evaluation:
    """The evaluation registered as ``name`` (an instance), importing its module now (and only now); ``data``: a
    file of items it reads instead of its own (:meth:`Evaluation.use_data`)."""
    cls = EVALUATIONS.load(name)
    if not issubclass(cls, Evaluation):
        raise CultureAlignError(f"evaluation '{name}': {cls.__name__} is not a culturealign.evaluations.Evaluation")
    evaluation = cls()
    if not evaluation.headline:
        raise CultureAlignError(f"evaluation '{name}': {cls.__name__} names no headline metric")
    evaluation.name, evaluation.title = name, evaluation.title or name
    if data is not None:
        evaluation.use_data(data)
    return evaluation


def describe(name: str) -> Evaluation:
    """For tables of saved results: the evaluation registered as ``name``, or, when it is not (an evaluation
    registered by a script that has not run here) or cannot be imported here, a plain :class:`Evaluation` of that
    name whose columns are the numbers its metrics hold."""
    try:
        return get_evaluation(name)
    except CultureAlignError:
        plain = Evaluation()
        plain.name = plain.title = name
        return plain


def in_rows(rows: list[dict]) -> list[str]:
    """The evaluations (registered names) that experiment ``rows`` carry, in the order they appear."""
    keys = dict.fromkeys(k for r in rows if isinstance(r, dict) for k in r)
    return [k for k in keys if k not in ROW_KEYS and k in EVALUATIONS]


def is_count(value) -> bool:
    """Whether a metric is a count (``n_questions``): tables show a count as it is, not averaged over seeds."""
    return isinstance(value, int) and not isinstance(value, bool)


def run_evaluation(name: str, session: Session, country: str | None, style: str = "naive",
                   soft_prompt: SoftPrompt | None = None, limit: int | None = None, data=None) -> dict:
    """Run evaluation ``name`` under prompt ``style`` (naive, persona or icl: the system message the VSM survey is
    asked with, for ``country``); returns its metrics, the headline checked. See :meth:`Evaluation.run`; ``data``:
    see :func:`get_evaluation`."""
    from .config import PromptStyle
    from .prompts import system_message
    from .targets import lookup

    evaluation = get_evaluation(name, data)
    evaluation.check(country)
    style = PromptStyle.parse(style, "prompt", "prompt style")
    persona = lookup(country) if style != PromptStyle.NAIVE and country is not None else None
    metrics = evaluation.run(session, country, system_message(style, persona, session.questionnaire), soft_prompt,
                             limit)
    if not isinstance(metrics, dict) or not isinstance(metrics.get(evaluation.headline), numbers.Real):
        raise CultureAlignError(f"evaluation '{name}' returned no number '{evaluation.headline}' (its headline)")
    return metrics


def check_limits(evaluations) -> dict[str, int | None]:
    """``{name: items per country}`` checked: registered names, each limit a count (0: listed, not run) or None
    (every item)."""
    if not isinstance(evaluations, dict):
        raise CultureAlignError(f"evaluations must map names to item limits, e.g. {{'culturalbench': 20}}, not "
                                f"{evaluations!r:.60}")
    for name, limit in evaluations.items():
        EVALUATIONS.check(name)
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise CultureAlignError(f"evaluations: the limit of '{name}' must be a count of items (0: not run) or "
                                    f"None (all), not {limit!r:.40}")
    return dict(evaluations)


def parse_evaluations(text: str) -> dict[str, int | None]:
    """``--evaluations name:N,name`` -> ``{name: N}``: the first N items per country (``all`` or no N: every item;
    0: listed, not run); ``none`` (or nothing): no evaluations.

    >>> parse_evaluations("culturalbench:20"), parse_evaluations("culturalbench:all"), parse_evaluations("none")
    ({'culturalbench': 20}, {'culturalbench': None}, {})
    >>> parse_evaluations("culturalbench:many")
    Traceback (most recent call last):
    culturealign.errors.CultureAlignError: --evaluations: 'culturalbench:many' is not name:N (N a count of items, or all)
    """
    out: dict[str, int | None] = {}
    if text.strip().lower() == "none":
        return out
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, limit = (s.strip() for s in part.partition(":"))
        if limit in ("", "all"):
            out[name] = None
        elif limit.isdigit():
            out[name] = int(limit)
        else:
            raise CultureAlignError(f"--evaluations: {part!r:.60} is not name:N (N a count of items, or all)")
    return check_limits(out)
