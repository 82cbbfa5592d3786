# Stage 1: fetch the declared sources into the verified cache, preprocess into deterministic shards.


rule datasets:
    output:
        directory("data/{benchmark}"),
    params:
        options=lambda wildcards: options.datasets(config, wildcards.benchmark),
    resources:
        **CPU_RESOURCES,
    conda:
        CONDA_ENV
    log:
        "logs/datasets/{benchmark}.log",
    shell:
        "benchpipe datasets prepare --benchmark {wildcards.benchmark} --out {output} {params.options} > {log} 2>&1"


# ImageNet comes from the user's licensed copy (datasets.imagenet), never from a download,
# so the rule exists only when that key is set; data/imagenet is then its output, not `datasets`'.
if config["datasets"]["imagenet"]:

    ruleorder: imagenet > datasets

    rule imagenet:
        output:
            directory("data/imagenet"),
        params:
            options=options.imagenet(config),
        resources:
            **CPU_RESOURCES,
        threads: config["datasets"]["workers"] or all_cores() or 1
        conda:
            CONDA_ENV
        log:
            "logs/datasets/imagenet.log",
        shell:
            "benchpipe datasets imagenet {params.options} --workers {threads}"
            " --out {output} > {log} 2>&1"
