rule train_sr:
    input:
        hr="data/hr",
        lr="data/lr",
        code=source_files("train-sr"),
    output:
        model="models/sr.safetensors",
        log="results/train/sr_loss.csv",
    params:
        files=PARAMS_ARGS,
        p=stage_params("train_sr"),
        checkpoints="checkpoints/train_sr",
    log:
        "logs/train_sr.log",
    priority: PRIORITY["train_sr"]
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["train_sr"],
    conda:
        ENV
    shell:
        "medsr train-sr {params.files} --hr {input.hr} --lr {input.lr} --model {output.model}"
        " --log {output.log} --checkpoints {params.checkpoints} --log-file {log}"


rule train_regression:
    input:
        hr="data/hr",
        lr="data/lr",
        code=source_files("train-regression"),
    output:
        model="models/regression.safetensors",
        log="results/train/regression_loss.csv",
    params:
        files=PARAMS_ARGS,
        p=stage_params("train_regression"),
    log:
        "logs/train_regression.log",
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["train_regression"],
    conda:
        ENV
    shell:
        "medsr train-regression {params.files} --hr {input.hr} --lr {input.lr}"
        " --model {output.model} --log {output.log} --log-file {log}"


# One classifier per architecture (train_classifier.architectures), image domain and training seed
# (evaluate.train_seeds): from scratch on data/hr; fine-tuned from that HR classifier on data/bicubic (the
# matched-domain baseline) and, with evaluate.sr_classifier, on the SR images of the train split made with that
# guidance mode.
rule train_classifier:
    input:
        images="data/{domain}",
        code=source_files("train-classifier"),
    output:
        model=f"{CLASSIFIERS}/{CLASSIFIER_MODEL}",
        log=f"{TRAIN_LOGS}/{CLASSIFIER_LOG}",
    params:
        files=PARAMS_ARGS,
        p=stage_params("train_classifier"),
        domain=lambda wildcards: wildcards.domain,
        init="",
    log:
        "logs/train_classifier/{arch}-{domain}-seed{seed}.log",
    wildcard_constraints:
        domain="hr",
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["train_classifier"],
    conda:
        ENV
    shell:
        "medsr train-classifier {params.files} --images {input.images} --model {output.model}"
        " --log {output.log} --architecture {wildcards.arch} --domain {params.domain} --seed {wildcards.seed}"
        " {params.init} --log-file {log}"


use rule train_classifier as finetune_classifier with:
    input:
        images="data/{domain}",
        init=HR_CLASSIFIER,
        code=source_files("train-classifier"),
    params:
        files=PARAMS_ARGS,
        p=stage_params("finetune_classifier"),
        domain=lambda wildcards: wildcards.domain,
        init=lambda wildcards, input: f"--init {input.init}",
    wildcard_constraints:
        domain="bicubic",


use rule train_classifier as train_sr_classifier with:
    input:
        images=f"results/sr/eval/{{guidance}}/seed{SAMPLING_SEEDS[0]}",
        init=HR_CLASSIFIER,
        code=source_files("train-classifier"),
    output:
        model=f"{CLASSIFIERS}/{CLASSIFIER_MODEL.format(arch='{arch}', domain=SR_DOMAIN, seed='{seed}')}",
        log=f"{TRAIN_LOGS}/{CLASSIFIER_LOG.format(arch='{arch}', domain=SR_DOMAIN, seed='{seed}')}",
    params:
        files=PARAMS_ARGS,
        p=stage_params("train_sr_classifier"),
        domain=lambda wildcards: "sr",  # a function: the linter takes a literal for a path prefix
        init=lambda wildcards, input: f"--init {input.init}",
    log:
        "logs/train_classifier/{arch}-sr-{guidance}-seed{seed}.log",
