"""Prompt construction: how a questionnaire's items are put to a chat model (styles naive / persona / icl, labels, order).

Every survey row is split into ``head`` (the chat up to the end of the user's message text) and ``tail`` (the
rest: end of turn, assistant header, optional answer prefix). A soft prompt goes before the head (``prefix``
placement) or between head and tail (``suffix`` placement).
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import Labels, Order, PromptConfig, PromptStyle
from .errors import CultureAlignError
from .instrument import Questionnaire
from .targets import CountryTarget

STYLES = PromptStyle.values()
ORDERS = Order.values()
LABELS = {Labels.DIGITS.value: ["1", "2", "3", "4", "5"], Labels.LETTERS.value: ["A", "B", "C", "D", "E"]}
DIMENSION_EXPLANATIONS = {
    "PDI": "the extent to which less powerful members of society accept that power is distributed unequally",
    "IDV": "the degree to which people look after themselves and their immediate family rather than belonging to groups",
    "MAS": "the degree to which society values achievement, heroism and material rewards over caring and quality of life",
    "UAI": "the degree to which members of society feel uncomfortable with uncertainty and ambiguity",
    "LTO": "the degree to which society prepares for the future through thrift and persistence rather than honouring tradition",
    "IVR": "the degree to which society allows relatively free gratification of basic drives related to enjoying life",
}


@dataclass(frozen=True)
class SurveyRow:
    item: int          # 1..n_items
    reversed: bool     # options listed 5..1: listed position k means answer 6-k
    head: str
    tail: str


def system_message(style: str, country: CountryTarget | None, questionnaire: Questionnaire) -> str | None:
    """The system message of a prompt style (None: the chat template's own default)."""
    if style == "naive":
        return None
    if country is None:
        raise CultureAlignError(f"prompt style '{style}' needs a country (--country)")
    text = (f"You are a person from {country.name}. Answer every survey question as a typical person from "
            f"{country.name} would, based on the values of {country.name}.")
    if style == "icl":
        # an instrument's own description of a dimension, else Hofstede's (the VSM 2013 and its translations)
        explain = {**DIMENSION_EXPLANATIONS, **questionnaire.descriptions}
        lines = [f"- {questionnaire.names.get(d, d)} ({d}): {country.scores[d]:g}."
                 + (f" It measures {explain[d]}." if d in explain else "")
                 for d in questionnaire.dimensions if d in country.scores]
        about = ("Hofstede's cultural dimensions (scale 0-100, higher means more)" if questionnaire.target_scores is None
                 else "the survey's dimensions (higher means more)")
        text += f"\nOn {about}, {country.name} scores:\n" + "\n".join(lines)
    return text


def user_message(item, labels: list[str], reverse: bool) -> str:
    options = list(reversed(item.options)) if reverse else list(item.options)
    listed = "\n".join(f"{label}. {option}" for label, option in zip(labels, options))
    unit = "number" if labels[0].isdigit() else "letter"
    question = f"{item.intro} {item.text}".strip() if item.intro else item.text
    return f"{question}\n\n{listed}\n\nAnswer with a single {unit} from {labels[0]} to {labels[-1]}."


def render_chat(tokenizer, system: str | None, user: str, answer_prefix: str = "") -> tuple[str, str]:
    """Split the chat-formatted prompt into (head, tail) at the end of the user's text."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja2's TemplateError: e.g. Gemma's "System role not supported"
            if not system:
                raise CultureAlignError(f"the tokenizer's chat template failed: {exc}") from None
            # a template without a system role: the system text opens the user's turn instead
            user = f"{system}\n\n{user}"
            text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                 add_generation_prompt=True)
    else:  # a base model without a chat template
        text = (f"{system}\n\n" if system else "") + f"Question: {user}\nAnswer:"
    end = text.rindex(user) + len(user)
    return text[:end], text[end:] + answer_prefix


def build_rows(questionnaire: Questionnaire, tokenizer, config: PromptConfig,
               country: CountryTarget | None = None) -> list[SurveyRow]:
    """The survey rows for one prompt configuration: one per item (one order) or two (both orders); for the
    VSM 2013, 24 or 48."""
    system = system_message(config.style, country, questionnaire)
    labels = LABELS[config.labels]
    orders = {"forward": [False], "reverse": [True], "both": [False, True]}[config.order]
    rows = []
    for reverse in orders:
        for item in questionnaire.items:
            head, tail = render_chat(tokenizer, system, user_message(item, labels, reverse), config.answer_prefix)
            rows.append(SurveyRow(item.id, reverse, head, tail))
    return rows
