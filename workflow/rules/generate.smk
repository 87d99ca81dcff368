rule generate:
    input:
        model=GENERATE_MODEL,
        lr="data/lr",
        guide=GUIDE,
        bicubic="data/bicubic",
        code=source_files("generate"),
    output:
        out=directory(f"{SR_SHARDS}/shard{{shard}}"),
    log:
        LOGS["generate"],
    priority: PRIORITY["generate"]
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["generate"],
    params:
        cmd=stage_command("generate"),
        p=stage_params("generate"),
    shell:
        "{params.cmd}"


rule gather:
    input:
        shards=generation_shards,
        code=source_files("gather"),
    output:
        out=directory(str(sr_folder(SR_SETS, "{guidance}", "{seed}"))),
    log:
        LOGS["gather"],
    conda:
        ENV
    params:
        cmd=stage_command("gather", shards=SR_SHARDS),
        p=stage_params("gather"),
    shell:
        "{params.cmd}"


rule regress:
    input:
        model="models/regression.safetensors",
        lr="data/lr",
        code=source_files("regress"),
    output:
        out=directory("results/regression"),
    log:
        LOGS["regress"],
    conda:
        ENV
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["regress"],
    params:
        cmd=stage_command("regress"),
        p=stage_params("regress"),
    shell:
        "{params.cmd}"
