"""Evaluation: classification metrics with bootstrap intervals, paired McNemar tests, image quality,
figures and the generated summary (`medsr evaluate`)."""
