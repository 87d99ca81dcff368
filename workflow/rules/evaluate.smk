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
        p=param_values("classify", "generate.guidance", "evaluate.seeds"),
        sr="results/sr/test",
    shell:
        "medsr classify {PARAMS_ARGS} --model {input.model} --hr {input.hr}"
        " --bicubic {input.bicubic} --regression {input.regression} --sr {params.sr}"
        " --out {output}"


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
        metrics="results/metrics.json",
        figures=directory("results/figures"),
        plots=directory("results/plots"),
    params:
        p=param_values("evaluate", "generate.guidance"),
        sr="results/sr/test",
    shell:
        "medsr evaluate {PARAMS_ARGS} --predictions {input.predictions} --hr {input.hr}"
        " --bicubic {input.bicubic} --regression {input.regression} --sr {params.sr} --lr {input.lr}"
        " --logs {input.logs} --metrics {output.metrics} --figures {output.figures}"
        " --plots {output.plots}"
