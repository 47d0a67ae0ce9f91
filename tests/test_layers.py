"""The package's dependency direction: the layers listed in the README's Layout section, each module importing only
from its own layer and those below it, and no import cycle. Every import counts, a lazy one inside a function too
(it is a dependency all the same); only ``if TYPE_CHECKING:`` blocks, which never run, are left out."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "culturealign"


def readme_layers() -> dict[str, int]:
    """module (without the package prefix; "" for the package itself) -> its layer, from the README's list."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for number, body in re.findall(r"^(\d+)\. (.*?)(?=^\d+\. |^\S|\Z)", section, re.M | re.S):
        for name in re.findall(r"`([\w.]+)`", body.split(":")[0]):
            layers["" if name == "culturealign" else name] = int(number)
    return layers


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, (ast.Name, ast.Attribute)) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its body."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
               for child in node.body for n in ast.walk(child)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                target = ".".join([p for p in base if p] + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "culturealign":
                target = node.module.removeprefix("culturealign").lstrip(".")
            else:
                continue
            for alias in node.names:   # `from . import base` imports the module base
                sub = f"{target}.{alias.name}".lstrip(".")
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("culturealign").lstrip(".") for a in node.names
                      if a.name.split(".")[0] == "culturealign"}
    return {t for t in found if t in known and t != name}


def test_every_module_is_in_the_readme_layers():
    layers, mods = readme_layers(), modules()
    assert len(layers) >= 30, "the README's Layout list was not found"
    assert not set(mods) - set(layers), f"add these modules to the README's Layout list: {sorted(set(mods) - set(layers))}"
    assert not set(layers) - set(mods), f"the README lists modules that do not exist: {sorted(set(layers) - set(mods))}"


def test_no_module_imports_from_a_layer_above_it():
    layers, mods = readme_layers(), modules()
    upward = [f"{name or 'culturealign'} (layer {layers[name]}) imports {t} (layer {layers[t]})"
              for name, path in mods.items() for t in sorted(imports_of(name, path, set(mods)))
              if layers.get(t, 0) > layers.get(name, 0)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    mods = modules()
    graph = {name: imports_of(name, path, set(mods)) for name, path in mods.items()}
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(m or "culturealign" for m in cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_check_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checker itself: a relative import, a lazy one inside a function and `from . import x` are all found."""
    pkg = tmp_path / "culturealign"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import thing\n")
    (pkg / "b.py").write_text("def f():\n    from culturealign.sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\n"
                                       "from .. import a\n")
    known = {"", "a", "b", "sub", "sub.c"}
    assert imports_of("a", pkg / "a.py", known) == {"b"}
    assert imports_of("b", pkg / "b.py", known) == {"sub.c"}
    assert imports_of("sub", pkg / "sub" / "__init__.py", known) == {"sub.c"}
    assert imports_of("sub.c", pkg / "sub" / "c.py", known) == {"a"}   # the TYPE_CHECKING import left out
