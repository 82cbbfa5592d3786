# Stage 5: describe each system, check everything, then write the submission tree.


rule describe_system:
    input:
        target=TARGET_FILE,
        image=image_record,
        images_first=IMAGES_FIRST,
    output:
        "runs/{target}/system.json",
    params:
        submitter=SUBMISSION["submitter"],
        division=SUBMISSION["division"],
        status=SUBMISSION["status"],
        images=IMAGES_DIR,
    # Described where the target's runs run: on a cluster, a node of its partition.
    resources:
        **TARGET_RESOURCES,
    conda:
        CONDA_ENV
    log:
        "logs/system/{target}.log",
    shell:
        "benchpipe run --images {params.images:q}"
        " --target-file {input.target} --input {input.target} --output {output} --"
        " benchpipe system --target-file {input.target} --submitter {params.submitter:q}"
        " --division {params.division} --status {params.status} --out {output} > {log} 2>&1"


rule package:
    input:
        tables="tables",
        datasets=sorted({dataset_dir(b) for b in BENCHMARKS}),
        systems=expand("runs/{target}/system.json", target=TARGETS),
        train=ALL_TRAIN_RUNS,
        tests=ALL_TESTS,
        mobile=ALL_MOBILE_RESULTS,
        mobile_app=MOBILE_APP_INPUT,
        mobile_systems=expand("runs/{target}/system.json", target=MOBILE_HOST_TARGETS),
    output:
        # A receipt beside the tree, not a file in it: Snakemake deletes a job's outputs
        # before re-running it, and a failed re-run must leave the verified tree whole.
        # `benchpipe package` replaces the tree only once everything checks out.
        f"{SUBMISSION_TREE}.verified",
    params:
        settings=json.dumps(config, sort_keys=True),
        tree=lambda wildcards, output: output[0].removesuffix(".verified"),
    conda:
        CONDA_ENV
    log:
        "logs/package.log",
    shell:
        "benchpipe package --settings {params.settings:q} --runs runs --tables {input.tables} --datasets data"
        " --out {params.tree} > {log} 2>&1 && benchpipe verify {params.tree} > {output} 2>> {log}"
