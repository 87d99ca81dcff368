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
from collections.abc import Callable, Sequence
from pathlib import Path

from medsr.errors import MedsrError

DEFAULT_PARAMS = "params.yaml"


def _common(parser: argparse.ArgumentParser, device: bool = False) -> None:
    parser.add_argument("--params", action="append", metavar="YAML",
                        help="parameter file; repeat to overlay files in order (default: params.yaml)")
    parser.add_argument("--log-file", type=Path, default=None,
                        help="also copy everything the stage prints to this file")
    if device:
        parser.add_argument("--device", default=None,
                            help="auto (default: cuda when available, else cpu), cpu, cuda or cuda:N")


def _path(parser: argparse.ArgumentParser, name: str, help: str, nargs: str | None = None) -> None:
    parser.add_argument(f"--{name}", required=True, type=Path, nargs=nargs, help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medsr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")

    p = sub.add_parser("download", help="build or fetch the labeled HR dataset (data.source)")
    _common(p)
    _path(p, "out", "dataset folder to write: <out>/{train,test}/{healthy,unhealthy}/*.png + manifest.csv")

    p = sub.add_parser("degrade", help="LR images by Eq. 1.1 and their bicubic upsampling")
    _common(p)
    _path(p, "hr", "HR dataset folder (from download)")
    _path(p, "lr", "LR folder to write")
    _path(p, "bicubic", "bicubic-upsampled LR folder to write")

    p = sub.add_parser("train-sr", help="train the class-guided diffusion SR model")
    _common(p, device=True)
    _path(p, "hr", "HR dataset folder")
    _path(p, "lr", "LR folder")
    _path(p, "model", "safetensors file to write (EMA weights + config)")
    _path(p, "log", "loss log CSV to write")
    _path(p, "checkpoints", "folder of resumable checkpoints (kept between runs)")

    p = sub.add_parser("train-regression", help="train the one-pass L1 regression SR baseline")
    _common(p, device=True)
    _path(p, "hr", "HR dataset folder")
    _path(p, "lr", "LR folder")
    _path(p, "model", "safetensors file to write")
    _path(p, "log", "loss log CSV to write")

    p = sub.add_parser("train-classifier", help="train the ResNet18 classifier on one image set")
    _common(p, device=True)
    _path(p, "images", "image set to train on (HR for the diagnostic classifier, bicubic for guidance)")
    _path(p, "model", "safetensors file to write")
    _path(p, "log", "per-epoch history CSV to write")

    p = sub.add_parser("generate", help="super-resolve one shard of the test LR images")
    _common(p, device=True)
    _path(p, "model", "SR model (from train-sr)")
    _path(p, "lr", "LR folder")
    _path(p, "guide", "classifier trained on bicubic images (used by predicted guidance)")
    _path(p, "bicubic", "bicubic folder (the guide classifier's input)")
    p.add_argument("--guidance", required=True, choices=["null", "predicted", "oracle"])
    p.add_argument("--seed", required=True, type=int, help="sampling seed")
    p.add_argument("--shard", required=True, type=int, help="shard id in generate.shards")
    _path(p, "out", "shard folder to write")

    p = sub.add_parser("gather", help="gather generation shards into one test image set")
    _common(p)
    _path(p, "shards", "folder holding shard<k> for every k in generate.shards")
    _path(p, "out", "image set folder to write")

    p = sub.add_parser("regress", help="super-resolve the test LR images with the regression baseline")
    _common(p, device=True)
    _path(p, "model", "regression model (from train-regression)")
    _path(p, "lr", "LR folder")
    _path(p, "out", "image set folder to write")

    p = sub.add_parser("classify", help="classify every test image set with the HR classifier")
    _common(p, device=True)
    _path(p, "model", "classifier (from train-classifier on HR)")
    _image_sets(p)
    _path(p, "out", "predictions CSV to write")

    p = sub.add_parser("evaluate", help="metrics with intervals, paired tests, image quality, figures")
    _common(p)
    _path(p, "predictions", "predictions CSV (from classify)")
    _image_sets(p)
    _path(p, "lr", "LR folder (for figures)")
    _path(p, "logs", "training logs (loss curves)", nargs="+")
    _path(p, "metrics", "metrics JSON to write")
    _path(p, "figures", "figures folder to write")
    _path(p, "plots", "DVC plot data folder to write")
    p = sub.add_parser("overlay-args", help="print a parameter overlay as `dvc exp run -S` arguments")
    p.add_argument("overlay", type=Path, help="overlay YAML, e.g. configs/thesis.yaml")
    p.add_argument("--base", type=Path, default=Path(DEFAULT_PARAMS), help="base parameters (params.yaml)")
    return parser


def _image_sets(parser: argparse.ArgumentParser) -> None:
    _path(parser, "hr", "HR image set (upper bound)")
    _path(parser, "bicubic", "bicubic-upsampled LR set (the baseline)")
    _path(parser, "regression", "regression SR set (does diffusion matter?)")
    _path(parser, "sr", "folder of diffusion SR sets: <sr>/<guidance>/seed<seed> for generate.guidance x evaluate.sampling_seeds")


def image_sets(args: argparse.Namespace, params) -> dict[str, Path]:
    """Named test image sets, in comparison order: hr, bicubic, regression, sr_<guidance>_seed<seed>."""
    sets = {"hr": args.hr, "bicubic": args.bicubic, "regression": args.regression}
    for guidance in params.generate.guidance:
        for seed in params.evaluate.sampling_seeds:
            sets[f"sr_{guidance}_seed{seed}"] = args.sr / guidance / f"seed{seed}"
    return sets


def _version() -> str:
    from medsr import __version__
    return f"medsr {__version__}"


def _stage(module: str) -> Callable[..., None]:
    return importlib.import_module(f"medsr.{module}").run


def dispatch(args: argparse.Namespace) -> None:
    from medsr.config import load_params

    if args.stage == "overlay-args":
        _stage("overlay")(args.overlay, args.base)
        return

    params = load_params(args.params or [DEFAULT_PARAMS])
    device = None
    if hasattr(args, "device"):
        from medsr.device import resolve_device
        device = resolve_device(args.device)

    stage = args.stage
    if stage == "download":
        _stage("data.download")(params.data, out=args.out)
    elif stage == "degrade":
        _stage("degrade")(params.degrade, hr=args.hr, lr=args.lr, bicubic=args.bicubic)
    elif stage == "train-sr":
        _stage("train_sr")(params.sr_model, params.diffusion, params.train_sr, hr=args.hr, lr=args.lr,
                           model=args.model, log=args.log, checkpoints=args.checkpoints, device=device)
    elif stage == "train-regression":
        _stage("train_regression")(params.sr_model, params.train_regression, hr=args.hr, lr=args.lr,
                                   model=args.model, log=args.log, device=device)
    elif stage == "train-classifier":
        _stage("classifier.train")(params.train_classifier, images=args.images, model=args.model,
                                   log=args.log, device=device)
    elif stage == "generate":
        _stage("generate")(params.generate, model=args.model, lr=args.lr, guide=args.guide,
                           bicubic=args.bicubic, guidance=args.guidance, seed=args.seed,
                           shard=args.shard, out=args.out, device=device)
    elif stage == "gather":
        shards = [args.shards / f"shard{k}" for k in sorted(params.generate.shards)]
        _stage("gather")(params.generate, shards=shards, out=args.out)
    elif stage == "regress":
        _stage("regress")(params.generate, model=args.model, lr=args.lr, out=args.out, device=device)
    elif stage == "classify":
        _stage("classify")(params.classify, model=args.model, sets=image_sets(args, params), out=args.out,
                           device=device)
    elif stage == "evaluate":
        _stage("evaluation.evaluate")(params.evaluate, predictions=args.predictions,
                                      sets=image_sets(args, params), lr=args.lr, logs=args.logs,
                                      metrics=args.metrics, figures=args.figures, plots=args.plots)
    else:  # pragma: no cover - argparse restricts the choices
        raise MedsrError(f"unknown stage {stage}")


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
    if args.stage != "overlay-args":
        print(f"medsr {args.stage}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
