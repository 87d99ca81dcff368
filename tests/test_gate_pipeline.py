"""End to end: on a user's folder data set that the classifiers cannot learn in their epochs, the run gives no
verdict (the learning gate, medsr.evaluation.gate) instead of confident p-values.

The data set: few, hard images written as an ImageFolder tree (<path>/{train,test}/{solid,rim}/*.png) from the
embedded MNI generator at 32 pixels, one faint (5 % contrast) lesion of radius 1.5 pixels per image, so the rim
that tells the classes apart is a fraction of a pixel: 24 train images per class (8 more carved into val) for a
ResNet18 from scratch in at most 8 epochs (early stopping, patience 2). Snakemake runs the smoke-size DAG on it
with data.source: folder and both gate checks on; the HR classifier's val AUROC stays far below the floor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from medsr.core.parameters import MniSource
from medsr.data import mni
from medsr.core.io import write_image
from project import copy_workflow, set_params, sh

pytestmark = pytest.mark.pipeline

HARD = MniSource(train_per_class=32, test_per_class=6, seed=5, lesion_radius=1.5, lesion_radius_jitter=0.1,
                 rim_width=0.6, lesion_count=(1, 1), lesion_contrast=0.05)
FOLDER_OF = {"healthy": "solid", "unhealthy": "rim"}  # the source's class folders (data.class_map)


def hard_folder(root: Path, size: int = 32) -> Path:
    for image in mni.generate(HARD, size):
        write_image(root / image.split / FOLDER_OF[image.label] / f"{image.id}.png", image.image)
    return root


@pytest.fixture(scope="module")
def underfit_run(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("underfit")
    project = copy_workflow(where / "project", "configs/smoke.yaml")
    set_params(project, {
        "data.source": "folder", "data.folder.path": str(hard_folder(where / "images")),
        "data.class_map": {folder: label for label, folder in FOLDER_OF.items()},
        "train_classifier.epochs": 8, "train_classifier.patience": 2,  # at most 8 epochs, stop after 2 without gain
        "train_classifier.min_epochs": 0,
        "evaluate.gate_require_converged": True,
        # the least DAG that reaches evaluate: one guidance mode, one shard, no posterior samples
        "generate.guidance": ["null"], "generate.shards": [0], "generate.samples_per_image": 1,
    })
    sh([sys.executable, "-m", "snakemake", "--cores", "2", "--max-threads", "1", "--resources", "gpu=1"], project)
    return project


def test_a_folder_data_set_the_classifiers_do_not_learn_gets_no_verdict(underfit_run):
    results = json.loads((underfit_run / "results/evaluation.json").read_text())
    gate = results["gate"]
    assert gate["passed"] is False and gate["reasons"], gate
    assert gate["require_converged"] is True and set(gate["classifiers"]) == {
        "classifier_resnet18_hr_seed0.csv", "classifier_resnet18_bicubic_seed0.csv"}
    assert all(r is not None for r in gate["classifiers"].values())  # every history carries its record
    assert results["verdicts"] and {v["verdict"] for v in results["verdicts"]} == {"no_verdict"}
    assert json.loads((underfit_run / "results/metrics.json").read_text())["gate"] == "no_verdict"
    summary = (underfit_run / "results/figures/summary.rst").read_text()
    assert summary.startswith("**The classifiers did not learn this data: no verdict.**\n\n- ")
    assert summary.index(gate["reasons"][0]) < summary.index("Verdict\n=======")
    assert results["summary"].startswith("The classifiers did not learn this data: no verdict.")
