"""Markdown tables of the benchmarks' JSON files (results/benchmarks/<name>.json), for the README.

`medsr readme` fills each `<!-- benchmark:<name>:begin -->` ... `<!-- benchmark:<name>:end -->` block of the README
with `TABLES[name](data)`, so no benchmark number in the README is typed by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medsr.report.agreement import judgement_caption, judgement_cell, judgement_column

DIFFICULTY_HEADER = ("| radius HR px | radius LR px | HR AUROC | HR FNR | bicubic AUROC | bicubic FNR | SR FNR | "
                     "McNemar p (unhealthy) | b / c | s |\n|---|---|---|---|---|---|---|---|---|---|")


def _table(columns: Sequence[str], rows: Iterable[str], caption: str) -> str:
    """A markdown table (header, separator, rows) and its caption paragraph."""
    head = f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}"
    return "\n".join([head, *rows]) + f"\n\n{caption}"


def _f(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def difficulty_row(row: Mapping[str, Any]) -> str:
    """One level of benchmarks/difficulty.py: HR-trained classifier on HR against bicubic-trained on bicubic."""
    m = row["mcnemar_unhealthy_hr_vs_bicubic"]
    sr = _f(row["sr"]["fnr"]) if "sr" in row else "-"
    return (f"| {row['lesion_radius']:g} | {row['lesion_radius_lr_px']:g} | {row['hr']['auroc']:.3f} | "
            f"{row['hr']['fnr']:.3f} | {row['bicubic']['auroc']:.3f} | {row['bicubic']['fnr']:.3f} | {sr} | "
            f"{m['pvalue']:.3g} | {m['b']} / {m['c']} | {row['seconds']:.0f} |")


def difficulty_markdown(data: Mapping[str, Any]) -> str:
    s = data["settings"]
    lines = [DIFFICULTY_HEADER, *(difficulty_row(r) for r in data["rows"])]
    return "\n".join(lines) + (f"\n\n{data['split']} split; {s['epochs']} classifier epochs, {s['train_per_class']} "
                               f"train images per class, FNR at val specificity {s['val_specificity']}; "
                               f"{_machine(data.get('machine'))}.")


def sampling_markdown(data: Mapping[str, Any]) -> str:
    lines = []
    for r in data["rows"]:
        fnr = "-" if r.get("fnr") is None else f"{r['fnr']:.3f} [{r['fnr_low']:.3f}, {r['fnr_high']:.3f}]"
        bar = "" if "meets_bar" not in r else ("yes" if r["meets_bar"] else "no")
        lines.append(f"| {r['row']} | {r['process']} | {r['steps']} | {r['batch']} | {r['images_per_s']:.2f} | "
                     f"{_f(r.get('speedup'), '.1f')} | {r['psnr']:.2f} | {r['ssim']:.4f} | {fnr} | "
                     f"{r['of_matmul']:.0%} | {bar} |")
    for name, ref in data.get("references", {}).items():
        fnr = "-" if ref.get("fnr") is None else f"{ref['fnr']:.3f} [{ref['fnr_low']:.3f}, {ref['fnr_high']:.3f}]"
        lines.append(f"| {name} | | | | | | {_f(ref.get('psnr'), '.2f')} | {_f(ref.get('ssim'), '.4f')} | {fnr} | | |")
    bar = data["bar"]
    return _table(("sampler", "process", "K", "batch", "images/s", "x seed-style", "PSNR dB", "SSIM", "FNR [95% CI]",
                   "of matmul", "meets the bar"), lines, (
        f"{data['images']} val images ({data['positives']} unhealthy) on {data['device']} with {data['threads']} "
        f"threads ({data.get('processor') or data.get('machine')}, torch {data['torch']}); the bar: >= "
        f"{bar['speedup']}x seed-style, PSNR at most {bar['psnr_drop']} dB and SSIM at most {bar['ssim_drop']} below "
        f"{bar['reference']['sampler']} K={bar['reference']['steps']}, FNR inside its interval."))


def _interval(r: Mapping[str, Any], key: str) -> str:
    return "-" if r.get(key) is None else f"{r[key]:.3f} [{r[key + '_low']:.3f}, {r[key + '_high']:.3f}]"


def student_sampling_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/sampling.py with a student row: the classifier's FNR first (argmax and at the val operating
    point), the choice the rule made and the student's acceptance."""
    lines = [f"| {r['row']} | {r['steps']} | {r['batch']} | {r['images_per_s']:.2f} | {_f(r.get('speedup'), '.1f')} | "
             f"{r['psnr']:.2f} | {r['ssim']:.4f} | {_interval(r, 'fnr')} | {_interval(r, 'fnr_op')} | "
             f"{r['of_matmul']:.0%} |" for r in data["rows"]]
    lines += [f"| {name} | | | | | {_f(ref.get('psnr'), '.2f')} | {_f(ref.get('ssim'), '.4f')} | "
              f"{_interval(ref, 'fnr')} | {_interval(ref, 'fnr_op')} | |" for name, ref in data["references"].items()]
    choice, accept = data.get("choice") or {}, data.get("student_acceptance")
    verdict = "not measured" if accept is None else ("holds" if accept["holds"] else "fails") + " (" + ", ".join(
        f"{k} {'yes' if v else 'no'}" for k, v in accept["checks"].items()) + ")"
    return _table(("sampler", "K", "batch", "images/s", "x seed-style", "PSNR dB", "SSIM", "FNR argmax [95% CI]",
                   "FNR at val operating point [95% CI]", "of matmul"), lines, (
        f"{data['images']} val images ({data['positives']} unhealthy) on {data['device']} with {data['threads']} "
        f"threads ({data.get('processor') or data.get('machine')}, torch {data['torch']}). Choice rule: "
        f"{choice.get('rule')}; chosen: **{choice.get('chosen')}**. Student acceptance: {verdict}."))


def seed_robustness_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/seed_robustness.py: one commit's verdicts with two sets of training seeds, with both Holm p."""
    seeds = data["train_seeds"]
    lines = [
        f"| comparison | verdict, seeds {seeds['a']} | holds | Holm p | verdict, seeds {seeds['b']} | holds | Holm p "
        f"| {judgement_column(data)} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        cells = [f"{r[k]['verdict']} | {r[k]['holds']}/{r[k]['replicates']} | {_p(r[k].get('pvalue_holm'))}"
                 if r[k] else "- | - | -" for k in "ab"]
        flag = " (LEAKS THE LABEL)" if r["leaks_label"] else ""
        lines.append(f"| {r['id']}{flag} | {cells[0]} | {cells[1]} | {judgement_cell(r)} |")
    commits = {k: ((data.get("provenance") or {}).get(k) or {}).get("git", {}).get("commit", "?")[:10] for k in "ab"}
    rules = sorted({r[k].get("rule", "?") for r in data["rows"] for k in "ab" if r[k]})
    return "\n".join(lines) + (f"\n\n{data['fair_verdicts_same']} of {data['fair_verdicts']} fair verdicts the same "
                               f"(runs of commits {commits['a']} and {commits['b']}; verdict rule "
                               f"{', '.join(rules)}){judgement_caption(data)}.")


def _environment(provenance: Mapping[str, Any] | None) -> str:
    """One run's machine and numeric code path, in a few words."""
    machine = (provenance or {}).get("machine") or {}
    numeric = ", ".join(f"{k}={v}" for k, v in sorted((machine.get("numeric_environment") or {}).items()))
    return f"{machine.get('cpu') or machine.get('platform', '?')}{' (' + numeric + ')' if numeric else ''}"


def _p(value: Any) -> str:
    return "-" if value is None else f"{value:.2g}"


def cross_machine_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/cross_machine.py: one commit's verdicts on two machines (or CPU code paths), with both p-values."""
    lines = []
    for r in data["rows"]:
        cells = [f"{r[k]['verdict']} | {r[k]['holds']}/{r[k]['replicates']} | {_p(r[k].get('pvalue_holm'))}"
                 if r[k] else "- | - | -" for k in "ab"]
        flag = " (LEAKS THE LABEL)" if r["leaks_label"] else ""
        lines.append(f"| {r['id']}{flag} | {cells[0]} | {cells[1]} | {judgement_cell(r)} |")
    runs = data.get("provenance") or {}
    commit = ((runs.get("a") or {}).get("git") or {}).get("commit") or "?"
    return _table(
        ("comparison", "verdict, run A", "holds", "Holm p", "verdict, run B", "holds", "Holm p",
         judgement_column(data)),
        lines,
        (
            f"{data['fair_verdicts_same']} of {data['fair_verdicts']} fair verdicts the same; commit "
            f"{commit[:10]}, train seeds {data.get('train_seeds')}; run A: {_environment(runs.get('a'))}; "
            f"run B: {_environment(runs.get('b'))}{judgement_caption(data)}."
        ),
    )


def cuda_check_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/cuda_check.py on one GPU: each part's outcome, training determinism and resume per autocast dtype,
    sampling throughput (when the part ran), the val precision check."""
    parts, lines = data["parts"], []
    for row in parts.get("train", []):
        lines.append(
            f"| train-sr, {row['amp']} autocast, {row['steps']} steps, batch {row['batch_size']}, crop "
            f"{row['crop']} | same run twice: max abs difference {row['same_run_twice_max_abs_difference']:g}; "
            f"resume: {row['resume_max_abs_difference']:g}; {row['seconds_per_step']:.3f} s/step, peak "
            f"{row.get('peak_memory_mb', 0) / 1024:.1f} GiB; non-determinism warnings: "
            f"{len(row.get('nondeterminism_warnings', []))} | {'ok' if row['ok'] else '**failed**'} |"
        )
    for name in ("pipeline", "sample", "quality"):
        part = parts.get(name)
        if part is None:
            continue
        if "skipped" in part:
            detail = f"not run: {part['skipped']}"
        elif name == "pipeline":
            detail = f"smoke DAG on the GPU in {part['seconds']:.0f} s (rc {part['returncode']})"
        elif name == "quality":
            detail = (f"{part['candidate']} vs fp32 on {part['images']} val images: PSNR "
                      f"{part['psnr_difference_db']:+.4f} dB, SSIM {part['ssim_difference']:+.5f}, same HR-classifier "
                      f"decision on {part['decision_agreement']:.3f}")
        else:
            best = max(part.get("rows", []), key=lambda r: r["images_per_s"], default=None)
            detail = "no rows" if best is None else (f"best {best['images_per_s']:.0f} images/s "
                                                     f"({best['sampler']}, batch {best['batch']})")
        lines.append(f"| {name} | {detail} | {'ok' if part.get('ok') else '**not ok**'} |")
    return _table(("part", "measured", "outcome"), lines, (
        f"{data.get('gpu') or data.get('device')}, torch {data.get('torch')}, CUDA {data.get('cuda')}; "
        f"{data.get('seconds')} s in all; check {'passed' if data.get('ok') else '**not passed**'}."))


def cuda_compile_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/cuda_check.py --parts compile: ResShift sampling throughput eager vs torch.compile, with TFLOP/s and
    the share of the bf16 matmul rate measured in the same run."""
    part = data["parts"]["compile"]
    lines = [f"| {r['sampler']} | {r['batch']} | {r['precision']} | {'torch.compile' if r['compiled'] else 'eager'}"
             f"{', cudnn.benchmark' if r.get('cudnn_benchmark') else ''} | {r['images_per_s']:.0f} | "
             f"{r['tflops']:.0f} | {r['share_of_matmul_rate']:.1%} | {r['warm_up_s']:.1f} |" for r in part["rows"]]
    return _table(("sampler", "batch", "precision", "mode", "images/s", "TFLOP/s", "of matmul rate", "warm-up s"),
                  lines, (f"{data.get('gpu')}, torch {data.get('torch')}; {part['gflop_per_call_batch1']:.0f} GFLOP "
                          f"per network call at batch 1 (128 x 128, thesis U-Net); bf16 matmul rate measured in the "
                          f"same run: {part['matmul']['tflops']:.0f} TFLOP/s."))


def verdict_rule_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/verdict_rule.py: per verdict rule, the verdicts of two seed sets on the val split."""
    seeds, rules = data["train_seeds"], list(data["rules"])
    first = data["rules"][rules[0]]["rows"]
    lines = []
    for i, row in enumerate(first):
        cells = []
        for rule in rules:
            r = data["rules"][rule]["rows"][i]
            cells += [f"{r[k]['verdict']} ({r[k]['holds']}/{r[k]['replicates']})" if r[k] else "-" for k in "ab"]
            cells.append("yes" if r["same"] else "**no**")
        flag = " (LEAKS THE LABEL)" if row["leaks_label"] else ""
        lines.append(f"| {row['id']}{flag} | {' | '.join(cells)} |")
    columns = ["comparison"] + [c for rule in rules for c in (f"{rule}: seeds {seeds['a']}", f"seeds {seeds['b']}",
                                                             "same")]
    counts = ", ".join(f"{rule} {data['rules'][rule]['fair_verdicts_same']}/{data['rules'][rule]['fair_verdicts']}"
                       for rule in rules)
    return _table(columns, lines, (
        f"Verdicts on the {data['split']} split (k/n: replicates that hold alone); fair verdicts the same: {counts}; "
        f"chosen: {data['chosen']}; {_machine(data.get('machine'))}."))


def classifier_recipe_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/classifier_recipe.py: per training seed, the kept epoch's val accuracy / AUROC with the
    training-time BatchNorm statistics (ema) and with precise BatchNorm."""
    lines = []
    for run in data["runs"]:
        cells = [f"{run['best'][v]['epoch']} | {run['best'][v]['val_acc']:.3f} | {run['best'][v]['val_auroc']:.3f}"
                 for v in ("ema", "precise")]
        lines.append(f"| {run['seed']} | {cells[0]} | {cells[1]} |")
    p, worst = data["params"], data["summary"]
    below = data["not_learned_below_val_acc"]
    return _table(("seed", "ema: epoch", "val acc", "val AUROC", "precise BN: epoch", "val acc", "val AUROC"), lines, (
        f"{data['architecture']} on {data['images']} (val split), {p['epochs']} epochs, batch {p['batch_size']}, "
        f"learning rate {p['learning_rate']:g} ({p['lr_schedule']}); seeds below val accuracy {below}: "
        f"{worst['ema']['seeds_not_learned']} with ema, {worst['precise']['seeds_not_learned']} with precise BN; "
        f"{_machine(data.get('machine'))}."))


def recipe_choice_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/recipe_choice.py: per training seed, each recipe's kept-epoch val AUROC / accuracy, and the
    recipe its criterion chose."""
    recipes = data["recipes"]
    lines = [f"| {seed} | " + " | ".join(f"{r['val_auroc'][str(seed)]:.3f} / {r['val_acc'][str(seed)]:.3f}"
                                         for r in recipes.values()) + " |" for seed in data["seeds"]]
    lines.append("| median | " + " | ".join(f"{r['median_val_auroc']:.3f} / {r['median_val_acc']:.3f}"
                                           for r in recipes.values()) + " |")
    if any(r.get("patience") for r in recipes.values()):  # early-stopping recipes (recipe_choice --converged)
        lines.append(
            "| converged seeds, mean epochs run | "
            + " | ".join(
                f"{r['converged_seeds']}/{len(data['seeds'])}, {r['mean_epochs_run']:.1f}" for r in recipes.values()
            )
            + " |"
        )

    def name(r: Mapping[str, Any]) -> str:
        start = f"fine-tuned from {Path(r['init']).name}" if r["init"] else "from scratch"
        stop = f" at most, {r['lr_schedule']}, patience {r['patience']}" if r.get("patience") else ""
        return f"{start}, lr {r['learning_rate']:g}, {r['epochs']} epochs{stop}"

    images = {r["images"] for r in recipes.values()}
    return _table(("seed", *(name(r) for r in recipes.values())), lines, (
        f"Val AUROC / val accuracy of the kept epoch (precise BN) on {', '.join(sorted(images))}; criterion: "
        f"{data['criterion']}; chosen: **{name(recipes[data['chosen']])}**; {_machine(data.get('machine'))}."))


def stop_rule_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/recipe_choice.py --replay: per early-stopping rule, per domain the mean / worst kept-epoch val AUROC
    over seeds and the mean epochs run, the converged runs, and the rule its criterion chose."""
    candidates = data["candidates"]
    domains = list(next(iter(candidates.values()))["domains"])
    lines = []
    for label, c in candidates.items():
        cells = [f"{c['domains'][d]['mean_val_auroc']:.3f} / {c['domains'][d]['worst_val_auroc']:.3f}, "
                 f"{c['domains'][d]['mean_epochs_run']:.1f}" for d in domains]
        mark = f"**{label}**" if label == data["chosen"] else label
        lines.append(f"| {mark} | {' | '.join(cells)} | {c['converged_runs']}/{c['runs']} |")
    first = next(iter(candidates.values()))["domains"]
    maxima = ", ".join(f"{d} {first[d]['max_epochs']}" for d in domains)
    return _table(("rule (monitor, patience, min_epochs)",
                   *(f"{d}: val AUROC mean / worst, epochs run" for d in domains), "converged runs"), lines, (
        f"Replayed on full-length runs ({maxima} epochs, seeds {', '.join(first[domains[0]]['runs'])}; "
        f"{', '.join(f'{d}: {src}' for d, src in data.get('sources', {}).items())}); criterion: {data['criterion']}; "
        f"chosen: **{data['chosen']}**; {_machine(data.get('machine'))}."))


def aa_calibration_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/aa_calibration.py: per verdict test, its A/A rejection rate on each null arm with the
    Clopper-Pearson 95% interval, its power on a real difference, and the candidate the declared criterion chose."""
    arms = [a for a in next(iter(data["candidates"].values())) if a.startswith("aa_")]
    power_arm = next(a for a in next(iter(data["candidates"].values())) if a.startswith("power_"))
    lines = []
    for name, c in data["candidates"].items():
        cells = [f"{c[a]['rate']:.3f} [{c[a]['interval'][0]:.3f}, {c[a]['interval'][1]:.3f}]" for a in arms]
        lines.append(f"| {name} | {' | '.join(cells)} | {'yes' if c['calibrated'] else '**no**'} | "
                     f"{c[power_arm]['rate']:.3f} [{c[power_arm]['interval'][0]:.3f}, "
                     f"{c[power_arm]['interval'][1]:.3f}] |")
    p, low, high = data["params"], *data["null_interval"]
    columns = ["verdict test", *(f"A/A {a[3:]} rejects [95% CI]" for a in arms), "calibrated",
               f"power, {power_arm[6:].replace('_vs_', ' vs ')}"]
    return _table(columns, lines, (
        f"{data['splits']} random splits of the val images ({data['val_images']['healthy']} healthy, "
        f"{data['val_images']['unhealthy']} unhealthy) into a threshold half and a pseudo-test half, and of "
        f"{p['seeds']} HR classifiers into two pseudo-arms of {p['pseudo_arm_seeds']}; alpha {data['alpha']:g}, "
        f"binomial 95% interval of a calibrated test's rate: [{low:.3f}, {high:.3f}]; criterion: {data['criterion']} "
        f"Chosen: **{data['chosen'] or 'none'}**; commit {str(data.get('commit'))[:10]}, "
        f"{_machine(data.get('machine'))}."))


def deployed_calibration_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/deployed_calibration.py: the deployed classifier's image-level test on Q1-shaped per-image swap
    nulls: rejection rate with its Clopper-Pearson 95% interval, whether it holds alpha, the p deciles."""
    lines = [f"| {r['comparison']} | {r['replicates']} | {r['discordant_misses']:.3f} | {r['rate']:.3f} "
             f"[{r['rate_low']:.3f}, {r['rate_high']:.3f}] | {'yes' if r['calibrated'] else '**no**'} | "
             f"{' '.join(f'{q:.2f}' for q in r['p_deciles'])} | {r['rate_bootstrap_z']:.3f} "
             f"[{r['rate_bootstrap_z_low']:.3f}, {r['rate_bootstrap_z_high']:.3f}] |" for r in data["rows"]]
    r = data["rows"][0]
    return _table(("null built from", "replicates", "discordant misses", f"rejects at {r['alpha']:g} [95% CI]",
                   "calibrated", "p deciles (uniform: 0.10 ... 0.90)", "bootstrap z test rejects (not used)"), lines, (
        f"Classifier: {data['classifier']}; per-image swap null on the val images ({r['healthy_threshold_images']} "
        f"healthy threshold images, {r['unhealthy_images']} unhealthy pseudo-test images a replicate), "
        f"{data['test']} with {data['bootstrap']} swaps at val specificity {data['val_specificity']}; commit "
        f"{str(data.get('commit'))[:10]}, {_machine(data.get('machine'))}."))


def swap_null_markdown(data: Mapping[str, Any]) -> str:
    """benchmarks/swap_null.py: the seed-level tests on per-image swap nulls (rejection rate, deciles), their power
    on planted effects (realised FNR difference, with Holm over the Q1 pair), the MDE and its extrapolation."""
    z = data["sizes"]
    rows = [f"| {n} | {t} | {r['replicates']} | {r['discordant_misses']:.3f} / {r['discordant_misses_unswapped']:.3f} "
            f"| {v['rate']:.3f} [{v['rate_low']:.3f}, {v['rate_high']:.3f}] | "
            f"{'yes' if v['calibrated'] else '**no**'} | "
            f"{' '.join(f'{q:.2f}' for q in v['p_deciles'])} |" for n, r in data["nulls"].items()
            for t, v in r["tests"].items()]
    arm = data["q2_arm_swap"]
    calibration = _table(("null", "test", "replicates", "discordant misses (swap / unswapped)",
                          f"rejects at {data['alpha']:g} [95% CI]", "calibrated", "p deciles (uniform: 0.10 ... 0.90)"),
                         rows, (
        f"Val images only (the test split is never read): per replicate {z['healthy_threshold']} of the "
        f"{z['healthy_val']} healthy val images set each (seed, arm)'s threshold at val specificity "
        f"{data['val_specificity']}, and all {z['unhealthy_pseudo_test']} unhealthy val images are the pseudo-test "
        f"images (the real verdict: {z['healthy_val']} and {z['real_unhealthy_test'] or 'every unhealthy test'}); "
        f"{z['seeds']} train seeds, one fair coin per image for all seeds. q2_sr: each arm mixes both classifiers "
        f"image by image on each pipeline's specificity scale (exchangeable, but no pipeline anyone runs). Swapping "
        f"whole Q2 arms per seed is no calibration ({arm['patterns']} sign patterns, the uniform two alone "
        f"{arm['floor']:.2%}; rejects " + ", ".join(f"{t} {v['rate']:.3f}" for t, v in arm["tests"].items()) + ")."))
    power = []
    for name, designs in data["power"].items():
        for d in designs:
            for t, v in d["tests"].items():
                cells = " | ".join(f"{p:.2f} / {h:.2f} ({-x:.3f})" for p, h, x in
                                   zip(v["power"], v["power_holm"], d["difference"]))
                power.append(f"| {name} | {d['seeds']} x {d['images']} | {t} | {v['size']:.3f} | {cells} | "
                             f"{_f(v['mde'])} / {_f(v['mde_holm'])} |")
    first = next(iter(data["power"].values()))[0]
    curve = _table(("null", "seeds x images", "test", "size", *(f"f {f:g}" for f in first["fractions"]),
                    "MDE / with Holm"), power, (
        f"Power (rejections with the planted sign) / with Holm over the Q1 pair (the other comparison on its null), "
        f"and the realised mean FNR difference in brackets, {first['replicates']} replicates per cell; arm A's "
        f"unhealthy pseudo-test images replaced by their HR version with probability f. MDE: the |difference| at "
        f"{0.8:.0%} power, interpolated (-: not reached). Smaller designs subsample seeds and images (measured)."))
    ex = data["extrapolation"]
    checks = "; ".join(f"{c['null']} {c['seeds']}x{c['images']} measured {_f(c['measured_mde_holm'])}, predicted "
                       f"{c['predicted_mde_holm']:.3f}" for c in ex["check"])
    reach = "; ".join(f"{n}: " + ", ".join(f"{k} seeds {'x ' + str(v) if v else 'none up to the largest'}"
                                         for k, v in by_seeds.items()) for n, by_seeds in ex["reach_target"].items())
    default = "; ".join(f"{n} {g['mde']:.3f} / {g['mde_holm']:.3f}" for n, grid in ex["grid"].items()
                        for g in grid if (g["seeds"], g["images"]) == (z["seeds"], z["real_unhealthy_test"]))
    machine = data.get("machine") or {}
    return (f"{calibration}\n\n{curve}\n\nExtrapolated, not measured (crossed_t's model: SE^2 = s_a^2/S + s_b^2/m + "
            f"s_e^2/(Sm) + V_val with the unswapped val comparison's components, V_val scaled to "
            f"{ex['healthy_val_images']} healthy val images; Holm as alpha/2): MDE / with Holm at the real design "
            f"({z['seeds']} seeds x {z['real_unhealthy_test']} unhealthy test images): {default or '-'}; unhealthy "
            f"images needed for an MDE <= {ex['target']} with Holm: {reach}. The model against the measured crossed_t "
            f"MDE with Holm (with the swap's components): {checks}. Commit {str(data.get('commit'))[:10]}; "
            f"{machine.get('platform', '?')} ({machine.get('processor', '?')}), shared CPU: timings not meaningful.")

def _machine(machine: Mapping[str, Any] | None) -> str:
    if not machine:
        return "machine not recorded"
    return f"{machine.get('platform', '?')}, torch {machine.get('torch', '?')}"


TABLES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "difficulty": difficulty_markdown,
    "sampling": sampling_markdown,
    "sampling_student": student_sampling_markdown,
    "sampling_student_val128": student_sampling_markdown,
    "seed_robustness": seed_robustness_markdown,
    "seed_robustness_10": seed_robustness_markdown,  # the check with ten training seeds per run (configs/verdict.yaml)
    "cross_machine": cross_machine_markdown,
    "cross_machine_10": cross_machine_markdown,  # the same with ten training seeds per run (configs/verdict.yaml)
    "cuda_check": cuda_check_markdown,
    "cuda_check_compile": cuda_compile_markdown,
    "classifier_recipe": classifier_recipe_markdown,
    "verdict_rule": verdict_rule_markdown,
    "bicubic_recipe": recipe_choice_markdown,
    "early_stop_recipe": recipe_choice_markdown,
    "stop_rule": stop_rule_markdown,  # recipe_choice.py --replay
    "aa_calibration": aa_calibration_markdown,
    "deployed_calibration": deployed_calibration_markdown,
    "swap_null": swap_null_markdown,
}
