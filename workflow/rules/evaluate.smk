rule classify:
    input:
        models=classifier_models(),
        hr="data/hr",
        bicubic="data/bicubic",
        regression="results/regression",
        sr=sr_sets("results/sr/eval"),
        code=source_files("classify"),
    output:
        "results/predictions.csv",
    params:
        files=PARAMS_ARGS,
        p=stage_params("classify"),
        sr=parent("sr", levels=2),
        models=parent("models"),
    log:
        "logs/classify.log",
    threads: TORCH_THREADS
    conda:
        ENV
    shell:
        "medsr classify {params.files} --models {params.models} --hr {input.hr} --bicubic {input.bicubic}"
        " --regression {input.regression} --sr {params.sr} --out {output} --log-file {log}"


rule evaluate:
    input:
        predictions="results/predictions.csv",
        hr="data/hr",
        bicubic="data/bicubic",
        regression="results/regression",
        sr=sr_sets("results/sr/eval"),
        lr="data/lr",
        logs=all_training_logs(),
        code=source_files("evaluate"),
    output:
        metrics=report("results/metrics.json", caption="../report/metrics.rst", category="Metrics"),
        results="results/evaluation.json",
        figures=report(directory("results/figures"), patterns=["{name}.png"], caption="../report/figures.rst",
                       category="Figures"),
        plots=directory("results/plots"),
    params:
        files=PARAMS_ARGS,
        p=stage_params("evaluate"),
        sr=parent("sr", levels=2),
        logs=parent("logs"),
    log:
        "logs/evaluate.log",
    threads: TORCH_THREADS
    conda:
        ENV
    shell:
        "medsr evaluate {params.files} --predictions {input.predictions} --hr {input.hr}"
        " --bicubic {input.bicubic} --regression {input.regression} --sr {params.sr} --lr {input.lr}"
        " --logs {params.logs} --metrics {output.metrics} --results {output.results} --figures {output.figures}"
        " --plots {output.plots} --log-file {log}"
