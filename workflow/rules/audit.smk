# Stage 6, on demand (`snakemake --cores all audit`): check the tree item by item as an
# auditor would, from the tree alone, and keep the report beside it.


rule audit:
    input:
        f"{SUBMISSION_TREE}.verified",
    output:
        f"{SUBMISSION_TREE}.audit.json",
    params:
        tree=lambda wildcards, input: input[0].removesuffix(".verified"),
        checker=options.audit(config),
    conda:
        CONDA_ENV
    log:
        "logs/audit.log",
    shell:
        "benchpipe audit {params.tree} {params.checker} --report {output} > {log} 2>&1"
