"""What the run found, in three sentences (medsr.report.answer), on made-up results: the words follow the verdicts
(SR lowers or raises the HR-trained classifier's misses, the classifier fine-tuned on bicubic does better or worse,
no detectable difference, no verdict), the numbers are the verdict table's, readable names stand where the results
have keys, an arm that leaks the label says so, and no sentence runs over 40 words whatever the run."""

from __future__ import annotations

import itertools
import json

import pytest

from medsr.evaluation.gate import NO_VERDICT
from medsr.evaluation.verdicts import VERDICT_TESTS
from medsr.report import readme
from medsr.report.answer import MAX_WORDS, answer_sentences, answer_text, headline_verdicts
from medsr.report.tables import VERDICT_HEADER, verdict_rows

SETS = {"hr": {"kind": "hr", "title": "HR", "guidance": None}, "bicubic": {"kind": "bicubic", "title": "bicubic"},
        "regression": {"kind": "regression", "title": "regression SR"}}


def _sr(guidance: str) -> dict:
    return {"kind": "sr", "title": f"SR ({guidance} guidance, seed 0)", "guidance": guidance,
            "leaks_label": guidance in ("oracle", "swapped")}


def _verdict(question: str, first: str, second: str, verdict: str, fnr: tuple[float, float],
             ci: tuple[float, float], holm: float, leaks: bool = False) -> dict:
    difference = fnr[0] - fnr[1]
    return {"id": f"{question}:{first}_vs_{second}", "question": question, "first": first, "second": second,
            "first_title": first, "second_title": second, "verdict": verdict, "leaks_label": leaks, "rule": "pooled",
            "holds": 5, "replicates": 5, "pvalue": holm / 2, "pvalue_holm": holm,
            "fnr_first_val": {"value": fnr[0]}, "fnr_second_val": {"value": fnr[1]},
            "fnr_difference_val": {"value": difference, "ci_low": ci[0], "ci_high": ci[1]},
            "mde": {"value": 0.112}, "equivalence": {"margin": 0.05}}


def results(q1: str = "first_better", q2: str = "second_better", guidance: tuple[str, ...] = ("null",),
            rule: str = "pooled", seeds: int = 5, sampling_seeds: int = 1) -> dict:
    """A results dict with the keys the answer reads: one regression and one SR arm per guidance mode in Q1, each SR
    arm against the matched baseline in Q2 (FNRs as in the default run's README: 0.790 / 0.907 / 0.593)."""
    sets = {**SETS, **{f"sr_{g}_seed0": _sr(g) for g in guidance}}
    groups = {f"{name}@hr": {"sets": [name], "leaks_label": entry.get("leaks_label", False)}
              for name, entry in sets.items()}
    groups["bicubic@bicubic"] = {"sets": ["bicubic"], "leaks_label": False}
    for g in guidance:
        groups[f"sr_{g}@hr"] = groups.pop(f"sr_{g}_seed0@hr")
    verdicts = [_verdict("Q1", "regression@hr", "bicubic@hr", "inconclusive", (0.861, 0.907), (-0.097, 0.005),
                         0.068)]
    for g in guidance:
        leaks = sets[f"sr_{g}_seed0"]["leaks_label"]
        verdicts.append(_verdict("Q1", f"sr_{g}@hr", "bicubic@hr", q1, (0.790, 0.907), (-0.190, -0.044), 0.023,
                                 leaks))
        verdicts.append(_verdict("Q2", f"sr_{g}@hr", "bicubic@bicubic", q2, (0.790, 0.593), (0.092, 0.304), 0.007,
                                 leaks))
    return {"settings": {"confidence": 0.95, "train_seeds": list(range(seeds)),
                         "sampling_seeds": list(range(sampling_seeds)), "val_specificity": 0.95,
                         "verdict_rule": rule, "bootstrap": 1000},
            "n_test": 1000, "n_unhealthy": 500, "sets": sets, "arm_groups": groups, "verdicts": verdicts,
            "questions": {}, "leaks_label": [f"sr_{g}_seed0" for g in guidance if sets[f"sr_{g}_seed0"]["leaks_label"]],
            "provenance": {"git": {"commit": "0123456789abcdef0123", "dirty": False}, "date_utc": "D"}}


def words(sentence: str) -> int:
    return len(sentence.split())


def test_sr_lowers_the_misses_and_the_fine_tuned_classifier_does_better():
    q1, q2, basis = answer_sentences(results())
    assert q1 == ("Diffusion SR lowers the HR-trained classifier's misses compared with bicubic upsampling: "
                  "false-negative rate 0.790 vs 0.907, difference -0.117 (95% CI -0.190 to -0.044, Holm p 0.023).")
    assert q2 == ("A classifier fine-tuned on bicubic images does better: diffusion SR through the HR-trained "
                  "classifier misses more, false-negative rate 0.790 vs 0.593, difference +0.197 (95% CI 0.092 to "
                  "0.304, Holm p 0.007).")
    assert basis == ("Each test is paired on 500 unhealthy test images over 5 classifier training seeds: one exact "
                     "paired test on the unhealthy images over all replicates, Holm-adjusted, at each classifier's "
                     "val threshold for specificity 0.95.")


def test_sr_raises_the_misses_and_the_fine_tuned_classifier_does_worse():
    q1, q2, _ = answer_sentences(results(q1="second_better", q2="first_better"))
    assert q1.startswith("Diffusion SR raises the HR-trained classifier's misses compared with bicubic upsampling:")
    assert q2.startswith("A classifier fine-tuned on bicubic images does worse: diffusion SR through the HR-trained "
                         "classifier misses fewer, false-negative rate 0.790 vs 0.593")


def test_inconclusive_is_no_detectable_difference_never_no_effect():
    text = answer_text(results(q1="inconclusive", q2="inconclusive"))
    q1, q2, _ = answer_sentences(results(q1="inconclusive", q2="inconclusive"))
    assert q1.startswith("Diffusion SR shows no detectable difference from bicubic upsampling in the HR-trained "
                         "classifier's misses: difference -0.117")
    assert q2.startswith("A classifier fine-tuned on bicubic images shows no detectable difference from diffusion SR "
                         "through the HR-trained classifier: difference +0.197")
    assert q1.endswith(", detectable 0.11).")
    assert "Holm p 0.023" in q1 and "no effect" not in text
    assert not any(word in text for word in ("lowers", "raises", "does better", "does worse"))


def test_a_withheld_verdict_says_so_and_claims_nothing():
    q1, q2, _ = answer_sentences(results(q1=NO_VERDICT, q2=NO_VERDICT))
    assert q1 == ("No verdict on whether diffusion SR lowers the HR-trained classifier's misses compared with bicubic "
                  "upsampling: the classifiers did not learn this data (false-negative rate 0.790 vs 0.907).")
    assert q2.startswith("No verdict on whether a classifier fine-tuned on bicubic images does better than diffusion "
                         "SR through the HR-trained classifier: the classifiers did not learn this data")
    assert "Holm p" not in q1 + q2 and "no detectable" not in q1 + q2


def test_the_fair_null_guided_arm_is_read_and_an_oracle_arm_is_flagged():
    both = results(guidance=("oracle", "null", "predicted"))
    q1, q2 = headline_verdicts(both)
    assert (q1["first"], q2["first"]) == ("sr_null@hr", "sr_null@hr")
    assert "oracle" not in answer_text(both) and "predicted" not in answer_text(both)
    q1, q2, _ = answer_sentences(results(guidance=("oracle",)))
    assert q1.startswith("Diffusion SR given the true label (not a fair test) lowers the HR-trained classifier's "
                         "misses")
    assert "diffusion SR given the true label (not a fair test) through the HR-trained classifier" in q2
    assert answer_sentences(results(guidance=("predicted",)))[0].startswith(
        "Diffusion SR guided by the predicted class lowers")


def test_a_run_without_sr_answers_from_regression_and_says_what_it_lacks():
    data = results(guidance=())
    q1, basis = answer_sentences(data)
    assert q1.startswith("Regression SR shows no detectable difference from bicubic upsampling")
    assert basis.startswith("Each test is paired")
    data["verdicts"] = []
    assert answer_sentences(data) == ["This run has no comparison of SR with bicubic upsampling to answer from."]


def test_the_basis_names_the_seeds_and_the_verdict_test():
    basis = answer_sentences(results(rule="seed_image_t", seeds=1, sampling_seeds=3))[-1]
    assert "500 unhealthy test images over 1 classifier training seed and 3 SR sampling seeds: a seed-level " \
           "paired t test of the FNR difference, Holm-adjusted" in basis


def test_the_interval_is_the_one_of_the_verdict_table():
    """Under a seed-level rule the sentence quotes the interval its test implies, as the verdict table does."""
    data = results(rule="seed_image_t")
    for v in data["verdicts"]:
        v["rule"] = "seed_image_t"
        v["verdict_test"] = {"difference": v["fnr_difference_val"]["value"], "se": 0.02, "df": 4}
    q1 = answer_sentences(data)[0]
    row = next(r for r in verdict_rows(data) if r[2].startswith("sr_null@hr"))
    cell = row[VERDICT_HEADER.index("FNR difference [CI]")]  # "-0.117 [-0.173, -0.061]"
    value, low, high = cell.replace("[", "").replace("]", "").replace(",", "").split()
    assert f"difference {value} (95% CI {low} to {high}, Holm p 0.023)" in q1


@pytest.mark.parametrize("rule", sorted(VERDICT_TESTS))
def test_every_sentence_is_at_most_40_words_and_names_no_internal_key(rule):
    labels = ("first_better", "second_better", "inconclusive", "equivalent", NO_VERDICT)
    for q1, q2, guidance, sampling in itertools.product(labels, labels, ("null", "predicted", "oracle", "swapped"),
                                                        (1, 3)):
        sentences = answer_sentences(results(q1, q2, (guidance,), rule, seeds=10, sampling_seeds=sampling))
        assert len(sentences) == 3
        for sentence in sentences:
            assert words(sentence) <= MAX_WORDS, (words(sentence), sentence)
            assert sentence.endswith(".") and sentence[0].isupper()
            assert "@" not in sentence and "_vs_" not in sentence and "sr_" not in sentence, sentence


def test_the_readme_answer_block_is_the_three_sentences_and_the_commit(tmp_path):
    data = results()
    (tmp_path / "evaluation.json").write_text(json.dumps(data))
    target = tmp_path / "README.md"
    target.write_text("# medsr\n\nintro\n\n<!-- answer:begin -->\nstale\n<!-- answer:end -->\n\n## Run it\n")
    readme.update_readme(target, tmp_path / "evaluation.json", tmp_path)
    text = target.read_text()
    block = text.split("<!-- answer:begin -->\n")[1].split("<!-- answer:end -->")[0]
    assert block == (f"{answer_text(data)}\n\nGenerated by `medsr readme` from results/evaluation.json of commit "
                     "0123456789 on an unknown CPU (? logical cores), date D; another CPU trains other models, and "
                     "how far the labels move between machines is in docs/evaluation.md.\n")
    assert text.startswith("# medsr\n\nintro\n\n") and text.endswith("\n## Run it\n")
    readme.update_readme(target, tmp_path / "evaluation.json", tmp_path)  # idempotent
    assert target.read_text() == text


def test_an_equivalent_verdict_names_its_margin_and_every_verdict_what_the_run_could_detect():
    q1, q2, _ = answer_sentences(results(q1="equivalent", q2="inconclusive"))
    assert "matches bicubic upsampling" in q1 and "within +-0.05" in q1, q1
    assert "no detectable difference" in q2 and "detectable 0.11" in q2, q2
    data = results(q1="inconclusive")
    data["verdicts"][1]["mde"] = {"value": None, "reason": "no standard error"}
    assert ", detectable" not in answer_sentences(data)[0]
