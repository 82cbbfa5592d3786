# Stage 1: fetch the declared sources, verify their sha256, write deterministic Parquet shards.


rule datasets:
    output:
        directory("data/{benchmark}"),
    conda:
        CONDA_ENV
    log:
        "logs/datasets/{benchmark}.log",
    shell:
        "benchpipe datasets --benchmark {wildcards.benchmark} --out {output} > {log} 2>&1"
