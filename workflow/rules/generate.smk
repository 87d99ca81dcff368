rule generate:
    input:
        model=GENERATE_MODEL,
        lr="data/lr",
        guide=GUIDE,
        bicubic="data/bicubic",
        code=source_files("generate"),
    output:
        out=directory(f"{SR_SHARDS}/shard{{shard}}"),
    params:
        cmd=stage_command("generate"),
        p=stage_params("generate"),
    log:
        LOGS["generate"],
    priority: PRIORITY["generate"]
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["generate"],
    conda:
        ENV
    shell:
        "{params.cmd}"


rule gather:
    input:
        shards=generation_shards,
        code=source_files("gather"),
    output:
        out=directory(str(sr_folder(SR_SETS, "{guidance}", "{seed}"))),
    params:
        cmd=stage_command("gather", shards=SR_SHARDS),
        p=stage_params("gather"),
    log:
        LOGS["gather"],
    conda:
        ENV
    shell:
        "{params.cmd}"


rule regress:
    input:
        model="models/regression.safetensors",
        lr="data/lr",
        code=source_files("regress"),
    output:
        out=directory("results/regression"),
    params:
        cmd=stage_command("regress"),
        p=stage_params("regress"),
    log:
        LOGS["regress"],
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["regress"],
    conda:
        ENV
    shell:
        "{params.cmd}"
