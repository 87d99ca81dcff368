rule train_sr:
    input:
        hr="data/raw",
        lr="data/lr",
        code=code("diffusion", "train_sr.py", "training.py"),
    output:
        model="models/sr.safetensors",
        log="results/train/sr_loss.csv",
    params:
        p=param_values("sr_model", "diffusion", "train_sr"),
        checkpoints="checkpoints/train_sr",
    resources:
        gpu=1,
    shell:
        "medsr train-sr {PARAMS_ARGS} --hr {input.hr} --lr {input.lr} --model {output.model}"
        " --log {output.log} --checkpoints {params.checkpoints}"


rule train_regression:
    input:
        hr="data/raw",
        lr="data/lr",
        code=code("diffusion", "train_regression.py", "training.py"),
    output:
        model="models/regression.safetensors",
        log="results/train/regression_loss.csv",
    params:
        p=param_values("sr_model", "train_regression"),
    resources:
        gpu=1,
    shell:
        "medsr train-regression {PARAMS_ARGS} --hr {input.hr} --lr {input.lr}"
        " --model {output.model} --log {output.log}"


rule train_classifier:
    input:
        images="data/raw",
        code=code("classifier"),
    output:
        model="models/classifier_hr.safetensors",
        log="results/train/classifier_hr.csv",
    params:
        p=param_values("train_classifier"),
    resources:
        gpu=1,
    shell:
        "medsr train-classifier {PARAMS_ARGS} --images {input.images}"
        " --model {output.model} --log {output.log}"


use rule train_classifier as train_guide_classifier with:
    input:
        images="data/bicubic",
        code=code("classifier"),
    output:
        model="models/classifier_bicubic.safetensors",
        log="results/train/classifier_bicubic.csv",
