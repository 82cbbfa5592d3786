# Stage 4: raw MLLOG and LoadGen logs into Parquet tables with explicit schemas.


rule parse:
    input:
        train=ALL_TRAIN_RUNS,
        tests=ALL_TESTS,
        mobile=ALL_MOBILE_RUNS,
    output:
        directory("tables"),
    params:
        rounds=options.rounds(config),
    conda:
        CONDA_ENV
    log:
        "logs/parse.log",
    shell:
        "benchpipe parse --runs runs --train-runs {input.train} --tests {input.tests} --mobile-runs {input.mobile}"
        " {params.rounds} --out {output} > {log} 2>&1"
