rule generate:
    input:
        model="models/sr.safetensors",
        lr="data/lr",
        guide="models/classifier_bicubic.safetensors",
        bicubic="data/bicubic",
        code=code("diffusion", "generate.py"),
    output:
        directory("results/sr/shards/{guidance}/seed{seed}/shard{shard}"),
    params:
        p=param_values("generate.sampler", "generate.steps", "generate.eta",
                       "generate.guidance_scale", "generate.batch_size", "generate.shards"),
    resources:
        gpu=1,
    shell:
        "medsr generate {PARAMS_ARGS} --model {input.model} --lr {input.lr} --guide {input.guide}"
        " --bicubic {input.bicubic} --guidance {wildcards.guidance} --seed {wildcards.seed}"
        " --shard {wildcards.shard} --out {output}"


rule gather:
    input:
        shards=expand("results/sr/shards/{{guidance}}/seed{{seed}}/shard{shard}", shard=SHARDS),
        code=code("gather.py"),
    output:
        directory("results/sr/test/{guidance}/seed{seed}"),
    params:
        p=param_values("generate.shards"),
        shards="results/sr/shards/{guidance}/seed{seed}",
    shell:
        "medsr gather {PARAMS_ARGS} --shards {params.shards} --out {output}"


rule regress:
    input:
        model="models/regression.safetensors",
        lr="data/lr",
        code=code("diffusion", "regress.py"),
    output:
        directory("results/regression/test"),
    params:
        p=param_values("generate.batch_size"),
    resources:
        gpu=1,
    shell:
        "medsr regress {PARAMS_ARGS} --model {input.model} --lr {input.lr} --out {output}"
