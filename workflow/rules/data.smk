rule download:
    input:
        code=source_files("download"),
    output:
        out=directory("data/hr"),
    log:
        LOGS["download"],
    conda:
        ENV
    params:
        cmd=stage_command("download"),
        p=stage_params("download"),
    shell:
        "{params.cmd}"


rule degrade:
    input:
        hr="data/hr",
        code=source_files("degrade"),
    output:
        lr=directory("data/lr"),
        bicubic=directory("data/bicubic"),
    log:
        LOGS["degrade"],
    priority: PRIORITY["degrade"]
    conda:
        ENV
    params:
        cmd=stage_command("degrade"),
        p=stage_params("degrade"),
    shell:
        "{params.cmd}"
