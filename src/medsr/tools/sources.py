"""The source files of a stage: the import graph of its command (the CLI and the stage module), which both front
ends list as the stage's code dependencies (Snakemake's rules through the workflow helpers, dvc.yaml through
`medsr dvc-sync`), so that editing a module reruns exactly the stages whose command runs it."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from medsr.stages import BY_COMMAND

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/medsr

def _module_file(module: str) -> Path | None:
    """src/medsr/a/b.py or src/medsr/a/b/__init__.py for `medsr.a.b`, None outside the package."""
    parts = module.split(".")
    if parts[0] != "medsr":
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_inits(module: str) -> list[str]:
    """`medsr.a.b` runs medsr/__init__.py and medsr/a/__init__.py first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def _imports(module: str) -> frozenset[str]:
    """The medsr modules `module` imports anywhere in its code (also inside functions)."""
    path = _module_file(module)
    if path is None:
        return frozenset()
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")
                base = ".".join(anchor[:len(anchor) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from medsr.x import module`
    return frozenset(m for m in found if _module_file(m) is not None)


def import_closure(*modules: str) -> list[str]:
    """Every medsr module that importing `modules` runs (package __init__ files included), sorted."""
    seen: set[str] = set()
    todo = [m for m in modules]
    while todo:
        module = todo.pop()
        if module in seen or _module_file(module) is None:
            continue
        seen.add(module)
        todo.extend(_imports(module))
        todo.extend(_package_inits(module))
    return sorted(seen)


def source_files(command: str, root: Path | str = "src") -> list[str]:
    """The source files a stage's command runs, as paths under `root` (the CLI and the stage module's imports; the
    CLI loads the tools' modules, `medsr.cli.TOOLS`, by name, which this graph does not follow)."""
    stage = BY_COMMAND[command]
    modules = import_closure("medsr.cli", f"medsr.{stage.module}")
    files = {str(_module_file(m).relative_to(PACKAGE_ROOT.parent)) for m in modules}
    return sorted(str(Path(root) / f) for f in files)
