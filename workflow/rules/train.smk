rule train_sr:
    input:
        hr="data/raw",
        lr="data/lr",
        code=code("diffusion", "train_sr.py", "training.py"),
    output:
        model="models/sr.safetensors",
        log="results/train/sr_loss.csv",
    params:
        files=PARAMS_ARGS,
        p=param_values("sr_model", "diffusion", "train_sr"),
        checkpoints="checkpoints/train_sr",
    log:
        "logs/train_sr.log",
    threads: TORCH_THREADS
    resources:
        gpu=1,
    conda:
        ENV
    shell:
        "medsr train-sr {params.files} --hr {input.hr} --lr {input.lr} --model {output.model}"
        " --log {output.log} --checkpoints {params.checkpoints} --log-file {log}"


rule train_regression:
    input:
        hr="data/raw",
        lr="data/lr",
        code=code("diffusion", "train_regression.py", "training.py"),
    output:
        model="models/regression.safetensors",
        log="results/train/regression_loss.csv",
    params:
        files=PARAMS_ARGS,
        p=param_values("sr_model", "train_regression"),
    log:
        "logs/train_regression.log",
    threads: TORCH_THREADS
    resources:
        gpu=1,
    conda:
        ENV
    shell:
        "medsr train-regression {params.files} --hr {input.hr} --lr {input.lr}"
        " --model {output.model} --log {output.log} --log-file {log}"


rule train_classifier:
    input:
        images="data/raw",
        code=code("classifier"),
    output:
        model="models/classifier_hr.safetensors",
        log="results/train/classifier_hr.csv",
    params:
        files=PARAMS_ARGS,
        p=param_values("train_classifier"),
    log:
        "logs/train_classifier.log",
    threads: TORCH_THREADS
    resources:
        gpu=1,
    conda:
        ENV
    shell:
        "medsr train-classifier {params.files} --images {input.images}"
        " --model {output.model} --log {output.log} --log-file {log}"


use rule train_classifier as train_guide_classifier with:
    input:
        images="data/bicubic",
        code=code("classifier"),
    output:
        model="models/classifier_bicubic.safetensors",
        log="results/train/classifier_bicubic.csv",
    log:
        "logs/train_guide_classifier.log",
