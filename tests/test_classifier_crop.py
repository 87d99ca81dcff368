"""benchmarks/classifier_crop.py: its criterion (converged, val AUROC close in every domain, half the seconds)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from classifier_crop import choose  # noqa: E402


def _rows(crop, hr, bicubic, seconds, converged=True):
    return [{"crop": crop, "domain": d, "seed": s, "val_auroc": a, "s": seconds / 4, "epochs": 10,
             "converged": converged} for s in (0, 1) for d, a in (("hr", hr), ("bicubic", bicubic))]


def test_the_largest_crop_that_is_close_converged_and_half_as_costly_is_chosen():
    rows = (_rows(0, 0.99, 0.86, 1000) + _rows(56, 0.99, 0.85, 600) + _rows(48, 0.99, 0.85, 500)
            + _rows(40, 0.99, 0.845, 400))
    out = choose(rows)
    assert out["chosen_crop"] == 48  # 56 is close but not cheap enough; 40 eligible too, but the smaller change wins
    eligible = {c["crop"]: c["eligible"] for c in out["candidates"]}
    assert eligible == {0: False, 40: True, 48: True, 56: False}


def test_a_crop_that_loses_val_auroc_in_one_domain_or_does_not_converge_is_not_chosen():
    rows = _rows(0, 0.99, 0.86, 1000) + _rows(48, 0.99, 0.83, 400) + _rows(40, 0.99, 0.86, 400, converged=False)
    out = choose(rows)
    assert out["chosen_crop"] == 0
    by_crop = {c["crop"]: c for c in out["candidates"]}
    assert by_crop[48]["auroc_within_tolerance"] is False and by_crop[40]["all_converged"] is False
