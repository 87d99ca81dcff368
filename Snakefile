# The medsr DAG for Snakemake. dvc.yaml declares the same stages, commands, files and parameters
# (tests/test_dag_agreement.py proves it); both are written from the stage table (medsr.stages). Parameters come
# from params.yaml; overlay more with `--configfile configs/thesis.yaml` (the overlay is passed on to every `medsr`
# command).
#
#   snakemake --cores 2 --max-threads 1            # the whole experiment on 2 CPU cores (one GPU: --cores 16 --max-threads 2 --resources gpu_mem_mb=120000)
#   snakemake --report results/report.html         # the self-contained report of the last run


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        TARGETS,
    localrule: True
