"""`medsr <stage>`: one subcommand per pipeline stage.

The CLI only wires parameter files, paths and the device to a stage function; Snakemake rules and
DVC stages run exactly these commands over the same files (tests/test_dag_agreement.py).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from medsr.core.errors import MedsrError

DEFAULT_PARAMS = "params.yaml"
SCHEMA_FILE = "workflow/schemas/params.schema.json"
# The commands that are not pipeline stages, by the module holding what each runs. The CLI loads them by name
# (importlib), which the import graph does not follow (`medsr.tools.sources.source_files`): no tool module is a source
# file of a stage, so editing one reruns nothing. (schema_text belongs to medsr.core.config, which every stage imports.)
TOOLS = {"overlay-args": "medsr.tools.overlay", "schema": "medsr.core.config", "dvc-sync": "medsr.tools.dvc_yaml",
         "readme": "medsr.report.readme"}


def _common(parser: argparse.ArgumentParser, device: bool = False) -> None:
    parser.add_argument("--params", action="append", metavar="YAML",
                        help="parameter file; repeat to overlay files in order (default: params.yaml)")
    parser.add_argument("--log-file", type=Path, default=None,
                        help="also copy everything the stage prints to this file")
    if device:
        parser.add_argument("--device", default=None,
                            help="auto (default: cuda when available, else cpu), cpu, cuda or cuda:N")


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per row of the stage table, plus the tools (`TOOLS`)."""
    from medsr.stages import STAGES

    parser = argparse.ArgumentParser(prog="medsr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")
    for stage in STAGES:
        p = sub.add_parser(stage.command, help=stage.help)
        _common(p, device=stage.device)
        for arg in stage.paths:
            p.add_argument(f"--{arg.name}", required=arg.required, type=Path, help=arg.help)
        for option in stage.options:
            p.add_argument(f"--{option.name}", required=True, type=option.type, choices=option.choices,
                           help=option.help)

    p = sub.add_parser("overlay-args", help="print a parameter overlay as `dvc exp run -S` arguments")
    p.add_argument("overlay", type=Path, help="overlay YAML, e.g. configs/thesis.yaml")
    p.add_argument("--base", type=Path, default=Path(DEFAULT_PARAMS), help="base parameters (params.yaml)")
    p = sub.add_parser("schema", help="write the JSON schema of params.yaml (what Snakemake validates with)")
    p.add_argument("--out", type=Path, default=Path(SCHEMA_FILE), help=f"schema file to write ({SCHEMA_FILE})")
    p = sub.add_parser("dvc-sync", help="rewrite dvc.yaml's commands from the stage table, its source "
                                        "dependencies from each stage's import graph, the one-step student's "
                                        "stage from generate.sampler, and the user-brought paths (each "
                                        "evaluate.external folder) as deps of the stages reading them")
    p.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"), help="dvc.yaml to update in place")
    p.add_argument("--params", action="append", metavar="YAML",
                   help="parameter file (repeat to overlay); generate.sampler decides whether dvc.yaml trains the "
                        "one-step student, evaluate.external which folders classify and evaluate depend on "
                        "(default: params.yaml)")
    p = sub.add_parser("readme", help="regenerate the verdict, results and benchmark blocks of the README and "
                       "docs/*.md from their JSON files")
    p.add_argument("--results", type=Path, default=Path("results/evaluation.json"), help="full results JSON")
    p.add_argument("--benchmarks", type=Path, default=Path("results/benchmarks"),
                   help="folder of the benchmarks' <name>.json (fills <!-- benchmark:<name>:begin --> blocks)")
    p.add_argument(
        "--readme",
        type=Path,
        default=Path("README.md"),
        help="README to update in place (and the docs/*.md pages beside it)",
    )
    return parser


def _version() -> str:
    from medsr import __version__
    return f"medsr {__version__}"


def _tool(args: argparse.Namespace) -> bool:
    """The commands that are not pipeline stages (`TOOLS`); True when `args` was one."""
    if args.stage not in TOOLS:
        return False
    from medsr.core.io import write_text

    tool = importlib.import_module(TOOLS[args.stage])
    if args.stage == "overlay-args":
        tool.run(args.overlay, args.base)
    elif args.stage == "schema":
        write_text(args.out, tool.schema_text())
    elif args.stage == "dvc-sync":
        from medsr.core.config import load_params
        params = load_params(args.params or [DEFAULT_PARAMS])
        write_text(args.dvc_yaml, tool.sync_dvc_yaml(args.dvc_yaml.read_text(), params, args.dvc_yaml.parent))
    else:  # readme
        tool.update_readme(args.readme, args.results, args.benchmarks)
    return True


def dispatch(args: argparse.Namespace) -> None:
    """Call the stage's run(*sections, **paths, **options[, sets][, device]) from the stage table."""
    from medsr.core.config import load_params
    from medsr.stages import BY_COMMAND, IMAGE_SET_PATHS

    if _tool(args):
        return
    stage = BY_COMMAND[args.stage]
    params = load_params(args.params or [DEFAULT_PARAMS])
    sections = [getattr(params, name) for name in stage.sections]
    kwargs = {arg.name: getattr(args, arg.name) for arg in (*stage.paths, *stage.options)}
    options = {option.name: kwargs[option.name] for option in stage.options}
    for name, files in stage.expand:  # a folder that stands for the files a run's params (and options) name in it
        kwargs[name] = files(kwargs[name], params, **options)
    if stage.image_sets:
        from medsr.data.image_sets import build
        roots = {arg.name: kwargs.pop(arg.name) for arg in IMAGE_SET_PATHS}
        kwargs["sets"] = build(**roots, guidance=params.generate.guidance,
                               sampling_seeds=params.evaluate.sampling_seeds,
                               external=params.evaluate.external, sr_classifier=bool(params.evaluate.sr_classifier))
    if stage.device:
        from medsr.core.device import resolve_device
        kwargs["device"] = resolve_device(args.device)
    importlib.import_module(f"medsr.{stage.module}").run(*sections, **kwargs)


class _Tee:
    """A text stream that writes to the terminal and to the stage's log file."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def _logging_to(path: Path | None):
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as log:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = out, err


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with _logging_to(getattr(args, "log_file", None)):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        dispatch(args)
    except MedsrError as err:
        print(f"medsr {args.stage}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medsr {args.stage}: interrupted; no partial output was left in place", file=sys.stderr)
        return 130
    if args.stage not in TOOLS:
        print(f"medsr {args.stage}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
