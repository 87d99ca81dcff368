"""Two runs' verdicts compared one by one (the seed check, and the verdict-rule choice on val).

A row per comparison id of either run: each run's verdict, holds k/n, FNR each side and Holm p, and whether the
verdicts are the same; label-leaking comparisons are kept but not counted among the fair ones.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medsr.core.config import to_jsonable
from medsr.core.io import read_json, write_json


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
        rows.append(row)
    fair = [r for r in rows if not r["leaks_label"]]
    return {"rows": rows, "fair_verdicts": len(fair), "fair_verdicts_same": sum(r["same"] for r in fair)}


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
