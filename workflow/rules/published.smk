# MLCommons' published results, on demand (published.enabled, or `snakemake compare`): fetched and
# imported into a table beside the trees, and the tree's results ranked among them
# (docs/published.md).


rule published:
    input:
        config["published"]["files"],
    output:
        directory(PUBLISHED_TABLE),
    params:
        sources=options.published_sources(config),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "logs/published.log",
    shell:
        "benchpipe published import {input:q} {params.sources} --out {output} > {log} 2>&1"


rule compare:
    input:
        verified=f"{SUBMISSION_TREE}.verified",
        published=PUBLISHED_TABLE,
    output:
        f"{SUBMISSION_TREE}.compare.txt",
    params:
        tree=lambda wildcards, input: input.verified.removesuffix(".verified"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "logs/compare.log",
    shell:
        "benchpipe compare {params.tree} --published {input.published} > {output}.partial 2> {log}"
        " && mv {output}.partial {output}"
