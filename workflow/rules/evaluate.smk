rule classify:
    input:
        models=classifier_models(),
        hr="data/hr",
        bicubic="data/bicubic",
        regression="results/regression",
        sr=sr_sets(),
        user=user_inputs("classify"),
        code=source_files("classify"),
    output:
        out=f"{PREDICTIONS}/{PREDICTIONS_SHARD}",
    log:
        LOGS["classify"],
    conda:
        ENV
    threads: TORCH_THREADS
    params:
        cmd=stage_command("classify", models=CLASSIFIERS, sr=SR_SETS),
        p=stage_params("classify"),
    shell:
        "{params.cmd}"


# Only with evaluate.deployed.file: the user's own classifier on every image set (evaluate then reads its
# predictions; no target asks for them otherwise).
rule classify_deployed:
    input:
        classifier=deployed_classifier,
        hr="data/hr",
        bicubic="data/bicubic",
        regression="results/regression",
        sr=sr_sets(),
        user=user_inputs("classify_deployed"),
        code=source_files("classify-deployed"),
    output:
        out=DEPLOYED_PREDICTIONS,
    log:
        LOGS["classify_deployed"],
    conda:
        ENV
    threads: TORCH_THREADS
    params:
        cmd=stage_command("classify_deployed", sr=SR_SETS),
        p=stage_params("classify_deployed"),
    shell:
        "{params.cmd}"


rule merge_predictions:
    input:
        predictions=prediction_shards(),
        code=source_files("merge-predictions"),
    output:
        out="results/predictions.csv",
    log:
        LOGS["merge_predictions"],
    conda:
        ENV
    params:
        cmd=stage_command("merge_predictions", predictions=PREDICTIONS),
        p=stage_params("merge_predictions"),
    shell:
        "{params.cmd}"


rule evaluate:
    input:
        **deployed_files(PARAMS),
        predictions="results/predictions.csv",
        hr="data/hr",
        bicubic="data/bicubic",
        regression="results/regression",
        sr=sr_sets(),
        lr="data/lr",
        logs=all_training_logs(),
        user=user_inputs("evaluate"),
        code=source_files("evaluate"),
    output:
        metrics=report("results/metrics.json", caption="../report/metrics.rst", category="Metrics"),
        results="results/evaluation.json",
        figures=report(
            directory("results/figures"), patterns=["{name}.png"], caption="../report/figures.rst", category="Figures"
        ),
        plots=directory("results/plots"),
    log:
        LOGS["evaluate"],
    conda:
        ENV
    threads: TORCH_THREADS
    params:
        cmd=stage_command("evaluate", sr=SR_SETS, logs=TRAIN_LOGS),
        p=stage_params("evaluate"),
    shell:
        "{params.cmd}"
