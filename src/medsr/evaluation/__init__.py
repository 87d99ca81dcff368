"""Evaluation numbers, computed from arrays: classification metrics with bootstrap intervals, paired tests, the
verdicts, ROC tails, image quality, the learning gate and the trust audit (`medsr evaluate`; written by
medsr.report)."""
