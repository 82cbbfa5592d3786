# Stage 5: describe each system, check everything, then write the submission tree.


rule describe_system:
    input:
        target_file,
    output:
        "runs/{target}/system.json",
    params:
        submitter=SUBMISSION["submitter"],
        division=SUBMISSION["division"],
        status=SUBMISSION["status"],
    conda:
        CONDA_ENV
    log:
        "logs/system/{target}.log",
    shell:
        "benchpipe system --target-file {input} --submitter {params.submitter:q}"
        " --division {params.division} --status {params.status} --out {output} > {log} 2>&1"


rule package:
    input:
        tables="tables",
        systems=expand("runs/{target}/system.json", target=TARGETS),
        train=ALL_TRAIN_RUNS,
        tests=ALL_TESTS,
    output:
        # The manifest, not the directory: it is written last, so a tree without one is
        # never complete, and Snakemake adds no marker file inside the tree.
        f"{SUBMISSION_TREE}/manifest.json",
    params:
        settings=json.dumps(config, sort_keys=True),
        tree=lambda wildcards, output: Path(output[0]).parent,
    conda:
        CONDA_ENV
    log:
        "logs/package.log",
    shell:
        "benchpipe package --settings {params.settings:q} --runs runs --tables {input.tables}"
        " --out {params.tree} > {log} 2>&1"
