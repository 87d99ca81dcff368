rule download:
    input:
        code=source_files("download"),
    output:
        out=directory("data/hr"),
    params:
        cmd=stage_command("download"),
        p=stage_params("download"),
    log:
        LOGS["download"],
    conda:
        ENV
    shell:
        "{params.cmd}"


rule degrade:
    input:
        hr="data/hr",
        code=source_files("degrade"),
    output:
        lr=directory("data/lr"),
        bicubic=directory("data/bicubic"),
    params:
        cmd=stage_command("degrade"),
        p=stage_params("degrade"),
    log:
        LOGS["degrade"],
    priority: PRIORITY["degrade"]
    conda:
        ENV
    shell:
        "{params.cmd}"
