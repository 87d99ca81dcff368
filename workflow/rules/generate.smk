rule generate:
    input:
        model="models/sr.safetensors",
        lr="data/lr",
        guide=GUIDE,
        bicubic="data/bicubic",
        code=source_files("generate"),
    output:
        directory("results/sr/shards/{guidance}/seed{seed}/shard{shard}"),
    params:
        files=PARAMS_ARGS,
        p=stage_params("generate"),
    log:
        "logs/generate/{guidance}-seed{seed}-shard{shard}.log",
    priority: PRIORITY["generate"]
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["generate"],
    conda:
        ENV
    shell:
        "medsr generate {params.files} --model {input.model} --lr {input.lr} --guide {input.guide}"
        " --bicubic {input.bicubic} --out {output} --guidance {wildcards.guidance} --seed {wildcards.seed}"
        " --shard {wildcards.shard} --log-file {log}"


rule gather:
    input:
        shards=expand("results/sr/shards/{{guidance}}/seed{{seed}}/shard{shard}", shard=SHARDS),
        code=source_files("gather"),
    output:
        directory("results/sr/eval/{guidance}/seed{seed}"),
    params:
        files=PARAMS_ARGS,
        p=stage_params("gather"),
        shards=parent("shards"),
    log:
        "logs/gather/{guidance}-seed{seed}.log",
    conda:
        ENV
    shell:
        "medsr gather {params.files} --shards {params.shards} --out {output} --log-file {log}"


rule regress:
    input:
        model="models/regression.safetensors",
        lr="data/lr",
        code=source_files("regress"),
    output:
        directory("results/regression"),
    params:
        files=PARAMS_ARGS,
        p=stage_params("regress"),
    log:
        "logs/regress.log",
    threads: TORCH_THREADS
    resources:
        gpu=1,
        gpu_mem_mb=GPU_MEM_MB["regress"],
    conda:
        ENV
    shell:
        "medsr regress {params.files} --model {input.model} --lr {input.lr} --out {output}"
        " --log-file {log}"
