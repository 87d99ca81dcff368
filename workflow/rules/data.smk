rule download:
    input:
        code=source_files("download"),
    output:
        directory("data/hr"),
    params:
        files=PARAMS_ARGS,
        p=stage_params("download"),
    log:
        "logs/download.log",
    conda:
        ENV
    shell:
        "medsr download {params.files} --out {output} --log-file {log}"


rule degrade:
    input:
        hr="data/hr",
        code=source_files("degrade"),
    output:
        lr=directory("data/lr"),
        bicubic=directory("data/bicubic"),
    params:
        files=PARAMS_ARGS,
        p=stage_params("degrade"),
    log:
        "logs/degrade.log",
    priority: PRIORITY["degrade"]
    conda:
        ENV
    shell:
        "medsr degrade {params.files} --hr {input.hr} --lr {output.lr} --bicubic {output.bicubic}"
        " --log-file {log}"
