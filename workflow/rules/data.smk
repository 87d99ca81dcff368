rule download:
    input:
        code=code("data"),
    output:
        directory("data/raw"),
    params:
        p=param_values("data"),
    shell:
        "medsr download {PARAMS_ARGS} --out {output}"


rule degrade:
    input:
        hr="data/raw",
        code=code("degrade.py"),
    output:
        lr=directory("data/lr"),
        bicubic=directory("data/bicubic"),
    params:
        p=param_values("degrade"),
    shell:
        "medsr degrade {PARAMS_ARGS} --hr {input.hr} --lr {output.lr} --bicubic {output.bicubic}"
