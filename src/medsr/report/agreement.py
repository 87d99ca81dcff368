"""Two runs' verdicts compared one by one (the seed checks, the cross-machine check, the verdict-rule choice on val).

A row per comparison id of either run: each run's verdict, holds k/n, FNR each side and Holm p, whether the labels
are the same, the between-run z of the FNR difference and whether the two verdicts are consistent (`runs_consistent`:
no opposite labels, z <= `BETWEEN_RUN_Z`); label-leaking comparisons are kept but not counted among the fair ones.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medsr.core.config import to_jsonable
from medsr.core.io import read_json, write_json

BETWEEN_RUN_Z = 3.0  # the largest between-run z of one verdict two runs may show (with ~15 compared, 2 fails by chance)
OPPOSITE = {"first_better", "second_better"}


def between_run_z(first: tuple[float, float | None] | None, second: tuple[float, float | None] | None
                  ) -> float | None:
    """z = |d_A - d_B| / sqrt(se_A^2 + se_B^2) of one verdict in two independent runs, each (difference, standard
    error of its verdict test): how far apart the runs' estimates are in units of the noise their tests claim. None
    when either has no standard error; infinite when both claim none and differ."""
    if first is None or second is None or first[1] is None or second[1] is None:
        return None
    gap, scale = abs(first[0] - second[0]), math.sqrt(first[1] ** 2 + second[1] ** 2)
    if scale <= 1e-15:
        return 0.0 if gap < 1e-12 else math.inf
    return gap / scale


def runs_consistent(first_label: str, second_label: str, z: float | None, bound: float = BETWEEN_RUN_Z
                    ) -> bool | None:
    """(a) the labels are not opposite (first_better against second_better) and (b) the between-run z is <= bound.
    Opposite labels are inconsistent whatever z is; otherwise None (not judged) when z is unknown."""
    if {first_label, second_label} == OPPOSITE:
        return False
    return None if z is None else z <= bound


def _estimate(v: Mapping[str, Any] | None) -> tuple[float, float | None] | None:
    """(FNR difference, standard error) of a verdict's own test; results without a verdict test (pooled): None."""
    test = (v or {}).get("verdict_test") or {}
    return (test["difference"], test.get("se")) if "difference" in test else None


def verdict_agreement(first: Iterable[Mapping[str, Any]], second: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    a, b = {v["id"]: v for v in first}, {v["id"]: v for v in second}
    rows = []
    for vid in sorted(set(a) | set(b)):
        va, vb = a.get(vid), b.get(vid)
        row: dict[str, Any] = {"id": vid, "leaks_label": bool((va or vb)["leaks_label"])}
        for name, v in (("a", va), ("b", vb)):
            row[name] = None if v is None else {
                "verdict": v["verdict"], "holds": v["holds"], "replicates": v["replicates"],
                "fnr_first": v["fnr_first_val"]["value"], "fnr_second": v["fnr_second_val"]["value"],
                "rule": v.get("rule", "majority"),  # results written before the pooled rule: majority verdicts
                "pvalue_holm": v.get("pvalue_holm"), "pvalue_holm_median": v["pvalue_holm_median"]}
        row["same"] = va is not None and vb is not None and va["verdict"] == vb["verdict"]
        row["z"] = between_run_z(_estimate(va), _estimate(vb))
        both = va is not None and vb is not None
        row["consistent"] = both and runs_consistent(va["verdict"], vb["verdict"], row["z"])
        rows.append(row)
    fair = [r for r in rows if not r["leaks_label"]]
    return {"rows": rows, "fair_verdicts": len(fair), "fair_verdicts_same": sum(r["same"] for r in fair),
            "fair_verdicts_consistent": sum(r["consistent"] is True for r in fair),
            "criterion": f"no opposite labels, between-run z <= {BETWEEN_RUN_Z:g}"}


def judgement_column(data: Mapping[str, Any]) -> str:
    """The last column: whether the verdicts are consistent (with their between-run z), or in records written before
    that judgement, whether the labels are the same."""
    return "consistent (z)" if "fair_verdicts_consistent" in data else "same"


def judgement_cell(r: Mapping[str, Any]) -> str:
    """yes | **no** | not judged (no standard error), with the between-run z; before that judgement: same label."""
    if "consistent" not in r:
        return "yes" if r["same"] else "**no**"
    return {True: "yes", False: "**no**", None: "not judged"}[r["consistent"]] + (
        "" if r["z"] is None else f" ({r['z']:.1f})")


def judgement_caption(data: Mapping[str, Any]) -> str:
    """The caption's count of consistent fair verdicts and the criterion (empty in records before it)."""
    if "fair_verdicts_consistent" not in data:
        return ""
    return (f"; {data['fair_verdicts_consistent']} of {data['fair_verdicts']} fair verdicts consistent "
            f"({data['criterion']})")


def compare_runs_cli(description: str, compare: Callable[[dict, dict], dict], markdown: Callable[[dict], str],
                     out: Path, argv: Sequence[str] | None = None) -> None:
    """The command line of a two-run check (seed robustness, cross-machine): two evaluation.json files in, the
    table printed, `compare`'s record written to --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args(argv)
    record = to_jsonable(compare(read_json(args.first), read_json(args.second)))
    print(markdown(record))
    write_json(args.out, record)
    print(f"wrote {args.out}")
