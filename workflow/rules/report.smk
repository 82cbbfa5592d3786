# Stage 7, on demand (`snakemake --cores all report`): one self-contained HTML page showing the
# tree and the audit's verdicts; `snakemake --report` then carries it as well.


rule report:
    input:
        verified=f"{SUBMISSION_TREE}.verified",
        audit=f"{SUBMISSION_TREE}.audit.json",
        # With published.enabled, the tree's results among MLCommons' published ones.
        published=[PUBLISHED_TABLE] if config["published"]["enabled"] else [],
    output:
        report(
            f"{SUBMISSION_TREE}.report.html",
            category="Submission",
            labels={"page": "benchpipe report"},
        ),
    params:
        tree=lambda wildcards, input: input.verified.removesuffix(".verified"),
        published=lambda wildcards, input: f"--published {input.published}" if input.published else "",
    conda:
        CONDA_ENV
    log:
        "logs/report.log",
    shell:
        "benchpipe report {params.tree} --audit {input.audit} {params.published} -o {output} > {log} 2>&1"
