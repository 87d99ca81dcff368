# One rule per rule of the stage table (medsr.stages.STAGES), everything it declares written by
# medsr.tools.snakemake_rules: inputs and outputs from the table's paths, the command, its params, resources.
for r in RULES:

    rule:
        name:
            r.name
        input:
            **r.input,
        output:
            **r.output,
        log:
            r.log,
        wildcard_constraints:
            **r.wildcard_constraints,
        priority: r.priority
        localrule: r.local
        conda:
            ENV
        threads: r.threads
        resources:
            **r.resources,
        params:
            cmd=r.cmd,
            p=r.params,
        shell:
            "{params.cmd}"
