"""The evaluation written out: figures, summary.rst, DVC plots and metrics, the results JSON, and the README's
generated blocks (results and benchmark tables); every number comes from the results dict of medsr.evaluation."""
