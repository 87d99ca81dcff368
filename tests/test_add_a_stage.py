"""Adding a pipeline stage, as a newcomer would (docs/CONTRACTS.md): its module, its row in the stage table, its params
section (params.yaml and medsr.core.parameters); `medsr schema` and `medsr dvc-sync` write the rest. Both front ends
then plan it with the same command over the same files, and no other file is touched."""

from __future__ import annotations

from dag import dvc_stages, snakemake_stages
from project import copy_workflow, sh

MODULE = '''"""`medsr count-images`: how many HR images each split holds."""

import json
from pathlib import Path

from medsr.core.parameters import CountImagesParams


def run(params: CountImagesParams, *, images: Path, out: Path) -> None:
    counts = {split.name: len(list(split.rglob(params.pattern))) for split in sorted(Path(images).iterdir())
              if split.is_dir()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(counts))
'''
ROW = '''    Stage("count-images", "count the HR images of each split", sections=("count_images",),
          params=("count_images",), target=True,
          paths=(PathArg("images", "HR dataset folder", HR),
                 PathArg("out", "counts JSON to write", "results/image_counts.json", out=True))),
'''
SECTION = '''

@section
class CountImagesParams:
    pattern: Str  # which files count as images
'''
PARAMS = "count_images:\n  pattern: '*.png'  # which files count as images\n"
# the newcomer's own files beside these: the stage's test and its docs
EDITED = {"src/medsr/stages/count_images.py", "src/medsr/stages/__init__.py", "src/medsr/core/parameters.py",
          "params.yaml"}
WRITTEN = {"dvc.yaml", "workflow/schemas/params.schema.json"}  # by `medsr dvc-sync` and `medsr schema`


def _edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: {old!r} is not where the contributors' guide says"
    path.write_text(text.replace(old, new))


def test_a_new_stage_is_its_module_its_row_and_its_params(tmp_path):
    project = copy_workflow(tmp_path / "project", git=True)
    env = {"PYTHONPATH": str(project / "src")}  # the copy's package, with the new stage
    (project / "src/medsr/stages/count_images.py").write_text(MODULE)
    _edit(project / "src/medsr/stages/__init__.py", "\n)\n\nBY_COMMAND = ", f"\n{ROW})\n\nBY_COMMAND = ")
    _edit(project / "src/medsr/core/parameters.py", "\n\n@section\nclass Params:\n",
          f"{SECTION}\n\n@section\nclass Params:\n")
    _edit(project / "src/medsr/core/parameters.py", "    evaluate: EvaluateParams\n",
          "    evaluate: EvaluateParams\n    count_images: CountImagesParams\n")
    (project / "params.yaml").write_text((project / "params.yaml").read_text() + PARAMS)
    sh(["medsr", "schema"], project, env=env)
    sh(["medsr", "dvc-sync"], project, env=env)

    changed = sh(["git", "status", "--porcelain", "--untracked-files=all"], project).stdout.splitlines()
    assert {line[3:] for line in changed} == EDITED | WRITTEN
    help_text = sh(["medsr", "count-images", "--help"], project, env=env).stdout
    assert "--images" in help_text and "--out" in help_text

    plans = {"snakemake": snakemake_stages(project, env=env)["count_images"],
             "dvc": dvc_stages(project)["count_images"]}
    assert plans["snakemake"].cmd == plans["dvc"].cmd == (
        "medsr count-images --params params.yaml --images data/hr --out results/image_counts.json "
        "--log-file logs/count_images.log")
    assert plans["snakemake"].outputs == plans["dvc"].outputs == {"results/image_counts.json"}
    assert "data/hr" in plans["snakemake"].inputs and "data/hr" in plans["dvc"].inputs
    assert "src/medsr/stages/count_images.py" in plans["snakemake"].inputs & plans["dvc"].inputs
    assert plans["dvc"].params == {"count_images"}
