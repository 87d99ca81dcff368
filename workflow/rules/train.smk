rule train_sr:
    input:
        hr="data/hr",
        lr="data/lr",
        code=source_files("train-sr"),
    output:
        model=SR_MODEL,
        log="results/train/sr_loss.csv",
    log:
        LOGS["train_sr"],
    priority: PRIORITY["train_sr"]
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["train_sr"],
    params:
        cmd=stage_command("train_sr"),
        p=stage_params("train_sr"),
    shell:
        "{params.cmd}"


# Only for generate.sampler student (a distilled sampler): the one-step student of train_sr's model, which generate
# then samples (GENERATE_MODEL); the default DAG does not run it.
rule train_student:
    input:
        teacher=STUDENT_FILES["teacher"],
        hr=STUDENT_FILES["hr"],
        lr=STUDENT_FILES["lr"],
        code=source_files("train-student"),
    output:
        model=STUDENT_FILES["model"],
        log=STUDENT_FILES["log"],
    log:
        LOGS["train_student"],
    priority: PRIORITY["train_sr"]
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["train_student"],
    params:
        cmd=stage_command("train_student"),
        p=stage_params("train_student"),
    shell:
        "{params.cmd}"


rule train_regression:
    input:
        hr="data/hr",
        lr="data/lr",
        code=source_files("train-regression"),
    output:
        model="models/regression.safetensors",
        log="results/train/regression_loss.csv",
    log:
        LOGS["train_regression"],
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["train_regression"],
    params:
        cmd=stage_command("train_regression"),
        p=stage_params("train_regression"),
    shell:
        "{params.cmd}"


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
    log:
        LOGS["train_classifier"],
    wildcard_constraints:
        domain="hr",
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["train_classifier"],
    params:
        cmd=stage_command("train_classifier"),
        p=stage_params("train_classifier"),
    shell:
        "{params.cmd}"


use rule train_classifier as finetune_classifier with:
    input:
        images="data/{domain}",
        init=HR_CLASSIFIER,
        code=source_files("train-classifier"),
    wildcard_constraints:
        domain="bicubic",
    params:
        cmd=stage_command("finetune_classifier"),
        p=stage_params("finetune_classifier"),


use rule train_classifier as train_sr_classifier with:
    input:
        images=str(sr_folder(SR_SETS, "{guidance}", SAMPLING_SEEDS[0])),
        init=HR_CLASSIFIER,
        code=source_files("train-classifier"),
    output:
        model=f"{CLASSIFIERS}/{CLASSIFIER_MODEL.format(arch='{arch}', domain=SR_DOMAIN, seed='{seed}')}",
        log=f"{TRAIN_LOGS}/{CLASSIFIER_LOG.format(arch='{arch}', domain=SR_DOMAIN, seed='{seed}')}",
    log:
        LOGS["train_sr_classifier"],
    params:
        cmd=stage_command("train_sr_classifier"),
        p=stage_params("train_sr_classifier"),
