rule classify:
    input:
        model="models/classifier_hr.safetensors",
        hr="data/raw",
        bicubic="data/bicubic",
        regression="results/regression/test",
        sr=sr_sets("results/sr/test"),
        code=code("classify.py", "classifier"),
    output:
        "results/predictions.csv",
    params:
        files=PARAMS_ARGS,
        p=param_values("classify", "generate.guidance", "evaluate.sampling_seeds"),
        sr=parent("sr", levels=2),
    log:
        "logs/classify.log",
    threads: TORCH_THREADS
    conda:
        ENV
    shell:
        "medsr classify {params.files} --model {input.model} --hr {input.hr}"
        " --bicubic {input.bicubic} --regression {input.regression} --sr {params.sr}"
        " --out {output} --log-file {log}"


rule evaluate:
    input:
        predictions="results/predictions.csv",
        hr="data/raw",
        bicubic="data/bicubic",
        regression="results/regression/test",
        sr=sr_sets("results/sr/test"),
        lr="data/lr",
        logs=[
            "results/train/sr_loss.csv",
            "results/train/regression_loss.csv",
            "results/train/classifier_hr.csv",
            "results/train/classifier_bicubic.csv",
        ],
        code=code("evaluation"),
    output:
        metrics=report("results/metrics.json", caption="../report/metrics.rst", category="Metrics"),
        figures=report(directory("results/figures"), patterns=["{name}.png"], caption="../report/figures.rst",
                       category="Figures"),
        plots=directory("results/plots"),
    params:
        files=PARAMS_ARGS,
        p=param_values("evaluate", "generate.guidance"),
        sr=parent("sr", levels=2),
    log:
        "logs/evaluate.log",
    threads: TORCH_THREADS
    conda:
        ENV
    shell:
        "medsr evaluate {params.files} --predictions {input.predictions} --hr {input.hr}"
        " --bicubic {input.bicubic} --regression {input.regression} --sr {params.sr} --lr {input.lr}"
        " --logs {input.logs} --metrics {output.metrics} --figures {output.figures}"
        " --plots {output.plots} --log-file {log}"
