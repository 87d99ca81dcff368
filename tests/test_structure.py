"""The package's shape: no import cycles (module-level or inside functions), evaluation/ computes and is a small
part of the package (report/ writes), no module too long to read in one sitting and no function longer than a
screen. The benchmarks are held to the same module length and use the package's public names only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "medsr"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_EVALUATION_SHARE = 0.20


def module_name(path: Path, root: Path) -> str:
    """`medsr.a.b` for root/a/b.py, `medsr.a` for root/a/__init__.py (root is the package folder)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([root.name, *parts])


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its code: at module level, inside functions and
    classes, relative or absolute; `from a import b` counts a and, when b is a module, a.b."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known and m != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan 1972), each as a sorted list: a
    module in one of them imports, directly or not, a module that imports it back."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


# --- the checks on src/medsr ------------------------------------------------------------------------------------

def test_no_import_cycle_in_the_package():
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles (each group imports itself through the others): " + \
        "; ".join(" <-> ".join(c) for c in found)


def test_evaluation_is_at_most_a_fifth_of_the_package():
    total = sum(lines(p) for p in PACKAGE.rglob("*.py"))
    evaluation = sum(lines(p) for p in (PACKAGE / "evaluation").rglob("*.py"))
    assert evaluation <= MAX_EVALUATION_SHARE * total, \
        f"evaluation/ holds {evaluation} of the package's {total} lines ({evaluation / total:.1%})"


def test_no_module_is_over_the_line_limit():
    long = {str(p.relative_to(PACKAGE)): lines(p) for p in PACKAGE.rglob("*.py")
            if lines(p) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def long_functions(root: Path, limit: int) -> dict[str, int]:
    """`module:function` -> lines (decorators excluded) of every function or method over `limit` lines."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    out[f"{path.relative_to(root)}:{node.name}"] = length
    return out


def test_no_function_is_over_the_line_limit():
    assert not long_functions(PACKAGE, MAX_FUNCTION_LINES), \
        f"functions over {MAX_FUNCTION_LINES} lines: {long_functions(PACKAGE, MAX_FUNCTION_LINES)}"


def test_the_function_length_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\nclass C:\n    def long(self):\n{body}\n")
    assert long_functions(tmp_path, MAX_FUNCTION_LINES) == {"m.py:long": MAX_FUNCTION_LINES + 1}


def test_evaluation_does_not_import_the_report():
    """evaluation/ computes the numbers, report/ writes them: the dependency runs one way only."""
    graph = import_graph(PACKAGE)
    back = {m: sorted(d for d in deps if d.startswith("medsr.report")) for m, deps in graph.items()
            if m.startswith("medsr.evaluation")}
    assert not any(back.values()), {m: d for m, d in back.items() if d}


# --- the checks on benchmarks/ --------------------------------------------------------------------------------

def test_no_benchmark_is_over_the_line_limit():
    found = sorted(BENCHMARKS.glob("*.py"))
    assert len(found) > 10  # the folder is where it was
    long = {p.name: lines(p) for p in found if lines(p) > MAX_MODULE_LINES}
    assert not long, f"benchmarks over {MAX_MODULE_LINES} lines: {long}"


def _private(name: str) -> bool:
    """`_name` is private; `__name__`-style names are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(path: Path) -> list[str]:
    """`line: name` of every private name a script takes from another module: `from m import _f`, `import m._p`, and
    `x._f` where x is a name its imports bound to a module of medsr (or beside it: another benchmark)."""
    tree = ast.parse(path.read_text(), str(path))
    siblings = {p.stem for p in path.parent.glob("*.py")}
    modules: set[str] = set()  # names bound to medsr (or sibling) modules or their members
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [f"{node.lineno}: {node.module}.{a.name}" for a in node.names if _private(a.name)]
            if (node.module or "").split(".")[0] in {"medsr", *siblings}:
                modules.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: {a.name}" for a in node.names if any(map(_private, a.name.split(".")))]
            modules.update((a.asname or a.name).split(".")[0] for a in node.names
                           if a.name.split(".")[0] in {"medsr", *siblings})
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_benchmarks_use_public_names_only():
    """A benchmark runs the package the way a user's script would: through its public names, so that renaming a
    private helper cannot break a benchmark unseen."""
    uses = {p.name: private_uses(p) for p in sorted(BENCHMARKS.glob("*.py"))}
    assert not any(uses.values()), {name: u for name, u in uses.items() if u}


def test_the_private_name_check_finds_each_form(tmp_path):
    (tmp_path / "helper.py").write_text("def _h():\n    return 1\n")
    (tmp_path / "script.py").write_text(
        "from medsr.stages.train_classifier import _evaluate, run\nimport medsr._secret\n"
        "from medsr.stages import train_classifier as train\n"
        "import helper\nfrom medsr import __version__\n\n"
        "train._train_epoch()\nhelper._h()\nrun.__doc__\nself._x = 1\n")
    assert private_uses(tmp_path / "script.py") == [
        "1: medsr.stages.train_classifier._evaluate", "2: medsr._secret", "7: train._train_epoch", "8: helper._h"]


# --- the checker itself, on packages with known cycles ------------------------------------------------------------

def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("files, expected", [
    ({"a.py": "import pkg.b\n", "b.py": "from pkg import a\n"}, [["pkg.a", "pkg.b"]]),
    # the cycle evaluate -> render -> evaluate had: the import back sits inside a function
    ({"a.py": "from pkg.b import f\n", "b.py": "def f():\n    from pkg.a import g\n    return g\n"},
     [["pkg.a", "pkg.b"]]),
    ({"sub/__init__.py": "", "sub/a.py": "from . import b\n", "sub/b.py": "from ..c import x\n",
      "c.py": "class C:\n    def m(self):\n        from pkg.sub.a import y\n"}, [["pkg.c", "pkg.sub.a", "pkg.sub.b"]]),
    ({"a.py": "import pkg.b\nimport os\n", "b.py": "import numpy\n"}, []),
])
def test_the_cycle_check_finds_module_and_function_level_cycles(tmp_path, files, expected):
    assert cycles(import_graph(_package(tmp_path, files))) == expected


# --- the Snakemake files ------------------------------------------------------------------------------------------

WORKFLOW = Path(__file__).resolve().parents[1] / "workflow" / "rules"


def test_the_rules_restate_no_path_and_common_smk_stays_short():
    """Each stage's files are declared once, in its row of the stage table: no .smk file names a DAG path, and the
    shared Snakemake setup stays a screen long."""
    for smk in sorted(WORKFLOW.glob("*.smk")):
        named = [line for line in smk.read_text().splitlines()
                 if any(f'"{root}/' in line for root in ("data", "models", "results", "logs"))]
        assert not named, f"{smk.name} names DAG paths: {named}"
    assert lines(WORKFLOW / "common.smk") <= 60
