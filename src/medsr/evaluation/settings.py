"""The "settings" block of the results: how every number was computed, in words, for the reader of the JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medsr.core.parameters import EvaluateParams
from medsr.evaluation.roc import SETTINGS as ROC_SETTINGS
from medsr.evaluation.verdicts import VERDICT_TESTS

GENERALIZES = ("The unit of replication is the training run: the verdict generalizes over new training seeds of "
               "these classifiers and new images of this kind (each verdict's generalizes_over and held_fixed); it "
               "does not generalize to other data sets, other classifier families, or other SR models and sampling "
               "seeds unless those are replicated too. With one training seed it is not testable (p = 1).")


def verdict_text(rule: str) -> str:
    """How a verdict under `rule` is reached, from its class; a training-run test's is followed by the decision
    and what the verdict generalizes over."""
    test = VERDICT_TESTS[rule]
    if not test.seed_unit:
        return test.description
    return f"{test.description}; significant when its Holm-adjusted p is < 1 - confidence. {GENERALIZES}"


def settings(params: EvaluateParams, classifiers: Sequence[str]) -> dict[str, Any]:
    return {
        "confidence": params.confidence, "bootstrap": params.bootstrap, "bootstrap_seed": params.bootstrap_seed,
        "exact_below": params.exact_below, "val_specificity": params.val_specificity,
        "train_seeds": list(params.train_seeds), "sampling_seeds": list(params.sampling_seeds),
        "classifiers": list(classifiers),
        "architectures": "every classifier family (train_classifier.architectures) is analysed on its own: its own "
                         "val operating points, Holm families and verdicts, on the same bootstrap resamples; the "
                         "headline metrics and the trust audit are of the first (resnet18)",
        "decision": "unhealthy iff P(unhealthy) > threshold; 0.5 is the argmax of the softmax",
        "operating_point": f"primary: per (classifier, image set, train seed) the smallest threshold whose val "
                           f"specificity is >= {params.val_specificity}; secondary: 0.5",
        "fnr_test": "McNemar (1947) on the truly unhealthy test images at the val operating point: exact binomial "
                    "if b + c < exact_below, else chi-square with continuity correction",
        "holm_family": "Holm (1979) within (question, fair | leaks_label) per train seed; all-images McNemar and the "
                       "0.5 operating point are adjusted in their own, secondary families",
        "replicates": "a comparison's replicates are its train seeds x the sampling seeds of its SR set (one per "
                      "train seed when no SR set with several seeds is involved)",
        "verdict_rule": params.verdict_rule,
        "equivalence_margin": params.equivalence_margin,
        "verdict": verdict_text(params.verdict_rule),
        "holds": "a replicate holds when its own Holm-adjusted McNemar p < 1 - confidence and its FNR difference has "
                 "the sign of the mean difference",
        "pooled": "mean over replicates; interval: percentile of the mean over replicates of per-replicate bootstrap "
                  "statistics, one resample matrix of the test images shared by every set, seed and classifier "
                  "(paired; Efron & Tibshirani 1993)",
        "p_columns": "p and Holm p of a comparison group: its paired test over all replicates (Holm within the "
                      "question's family); pvalue_median, pvalue_holm_median: medians of the per-replicate McNemar "
                      "tests",
        "auroc_test": "DeLong et al. (1988), paired (secondary)",
        **ROC_SETTINGS,
    }
