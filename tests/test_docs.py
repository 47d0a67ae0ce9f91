"""The documentation keeps up with the code: every command of the command line and every option in its ``--help``
is in docs/commands.md, in that command's section; the README stays a five-minute read with the two commands CI and
users rely on; the docs' local links and the instrument example resolve."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer

from culturealign.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
COMMANDS_DOC = DOCS / "commands.md"
README_MAX_LINES = 260
TWO_COMMANDS = (
    "bash scripts/quickstart.sh   # set up .venv (pinned deps + the offline default model) and run the main job",
    "bash scripts/test.sh         # set up and run the test suite, then the vLLM agreement test (what CI runs: .ci/run)",
)
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*$")
FENCE = re.compile(r"^\s*(```|~~~)")


# ---- the command line, walked ---------------------------------------------------------------------------------------
def cli_commands() -> dict[tuple[str, ...], list[str]]:
    """Every command that runs something, by its path (``("align",)``, ``("evaluate", "opinions")``), with the
    options its ``--help`` lists (``--help`` itself aside). Groups are walked through ``list_commands`` and
    ``get_command``, so the registered evaluations (``evaluate NAME``: culturealign.evaluations.EVALUATIONS) are
    their own commands."""
    root = typer.main.get_command(app)
    found: dict[tuple[str, ...], list[str]] = {}

    def walk(command, path: tuple[str, ...], parent) -> None:
        ctx = command.context_class(command, info_name=path[-1] if path else "culturealign", parent=parent)
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, f"{' '.join(path + (name,))} is listed but cannot be found"
                walk(sub, path + (name,), ctx)
            return
        options = []
        for param in command.get_params(ctx):
            for opt in (*param.opts, *getattr(param, "secondary_opts", ())):
                if opt.startswith("-") and opt != "--help" and opt not in options:
                    options.append(opt)
        found[path] = options

    walk(root, (), None)
    return found


COMMANDS = cli_commands()


# ---- docs/commands.md, read as sections ----------------------------------------------------------------------------
def headings(text: str) -> list[tuple[int, int, str]]:
    """``(line number, level, title)`` of every Markdown heading outside code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines()):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            out.append((number, len(m.group(1)), m.group(2)))
    return out


def command_text(text: str, path: tuple[str, ...]) -> str | None:
    """What docs text documents the command ``path``: its section (from the heading that names
    ``culturealign <path>`` in code to the next heading of the same or a higher level, subsections included) and the
    text of each enclosing section before its first subsection (options shared by a group's commands, such as
    ``evaluate NAME``'s). None when no heading names the command."""
    lines = text.splitlines()
    marks = headings(text)
    name = re.compile(r"`culturealign " + re.escape(" ".join(path)) + r"(?:`|\s)")
    for i, (start, level, title) in enumerate(marks):
        if not name.search(title):
            continue
        end = next((n for n, lv, _ in marks[i + 1:] if lv <= level), len(lines))
        parts = ["\n".join(lines[start:end])]
        want = level
        for j in range(i - 1, -1, -1):      # enclosing sections: their own text, up to their first subsection
            n, lv, _ = marks[j]
            if lv < want:
                parts.append("\n".join(lines[n:marks[j + 1][0]]))
                want = lv
        return "\n".join(parts)
    return None


def mentions(text: str, option: str) -> bool:
    """Whether ``option`` appears as itself (``--seed`` is not found in ``--seeds``, ``-c`` not in ``--country``)."""
    return re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", text) is not None


def undocumented(text: str) -> dict[str, list[str]]:
    """Per command (its path joined): the options of its ``--help`` that its docs text does not mention, or
    ``["(no section)"]`` when no heading names the command."""
    missing = {}
    for path, options in COMMANDS.items():
        section = command_text(text, path)
        if section is None:
            missing[" ".join(path)] = ["(no section)"]
        elif lost := [o for o in options if not mentions(section, o)]:
            missing[" ".join(path)] = lost
    return missing


def test_the_command_line_is_walked_whole():
    from culturealign.evaluations import EVALUATIONS

    names = {" ".join(p) for p in COMMANDS}
    assert {"countries", "measure", "indices", "align", "reach", "compare", "generate", "experiment", "report",
            "evaluate robustness"} <= names
    assert {f"evaluate {e}" for e in EVALUATIONS} <= names          # every registered evaluation is a command
    assert {"--objective", "--validate", "--validate-every", "--init-noise", "--questionnaire"} <= set(COMMANDS[("align",)])
    assert {"--data", "--all-countries"} <= set(COMMANDS[("evaluate", "opinions")])


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p))
def test_every_command_and_option_is_in_docs_commands(path):
    section = command_text(COMMANDS_DOC.read_text(encoding="utf-8"), path)
    assert section is not None, f"docs/commands.md has no heading naming `culturealign {' '.join(path)}`"
    missing = [o for o in COMMANDS[path] if not mentions(section, o)]
    assert not missing, f"docs/commands.md, `culturealign {' '.join(path)}`: options not documented: {missing}"


def test_the_check_fails_when_an_option_or_a_command_is_missing():
    text = COMMANDS_DOC.read_text(encoding="utf-8")
    assert undocumented(text) == {}
    without = re.sub(r"(?<![\w-])--validate-every(?![\w-])", "--every-so-often", text)
    assert "--validate-every" in undocumented(without)["align"]
    assert "--validate-every" in undocumented(without)["experiment"]
    assert "--validate" not in undocumented(without).get("align", [])    # a prefix of the removed one is still there
    no_heading = re.sub(r"^(#+ )`culturealign evaluate opinions`", r"\1Opinions", text, flags=re.M)
    assert undocumented(no_heading).get("evaluate opinions") == ["(no section)"]
    # an option documented only in another command's section does not count
    assert "--items" in undocumented(text.replace("--items/--no-items", "--rows"))["measure"]


def test_a_group_shares_the_options_before_its_first_subsection():
    doc = ("## `culturealign evaluate NAME`\n\n| `--limit` | shared |\n\n### `culturealign evaluate a`\n\n`--only-a`\n\n"
           "### `culturealign evaluate b`\n\ntext\n\n## `culturealign other`\n\n`--other`\n")
    b = command_text(doc, ("evaluate", "b"))
    assert mentions(b, "--limit") and not mentions(b, "--only-a") and not mentions(b, "--other")
    assert command_text(doc, ("evaluate", "c")) is None
    assert not mentions("`--seeds`", "--seed") and mentions("`--country/-c`", "-c") and not mentions("--country", "-c")


# ---- the README ------------------------------------------------------------------------------------------------
def test_the_readme_is_short_and_has_the_two_commands():
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move detail into docs/"
    at = lines.index("## Two commands")
    block = lines[at + 1:at + 6]
    assert "```bash" in block and all(command in block for command in TWO_COMMANDS), \
        "README.md's '## Two commands' block must hold the quickstart and test commands exactly"
    start, end = text.count("<!-- main-table:start -->"), text.count("<!-- main-table:end -->")
    assert start == end == 1 and text.index("<!-- main-table:start -->") < text.index("<!-- main-table:end -->")


def test_the_docs_local_links_resolve():
    broken = []
    for doc in (README, *sorted(DOCS.glob("*.md"))):
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text(encoding="utf-8")):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    out = set()
    for _, _, title in headings(text):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_the_shipped_wordings_are_documented():
    from culturealign.instrument import INSTRUMENTS

    method = (DOCS / "method.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in method for name in INSTRUMENTS if name.startswith("vsm2013"))


def test_the_extending_example_instrument_is_valid():
    from culturealign.instrument import Questionnaire
    from culturealign.targets import targets_for

    text = (DOCS / "extending.md").read_text(encoding="utf-8")
    block = text.split("## An instrument")[1].split("```json")[1].split("```")[0]
    q = Questionnaire.from_dict(json.loads(block), "docs/extending.md")
    assert q.dimensions == ("HAR", "THR", "ZEA") and q.n_items == 6 and q.items[5].options[0] == "strongly agree"
    assert targets_for(q).lookup("US").vector(q.dimensions).tolist() == [10, 50, 30]
