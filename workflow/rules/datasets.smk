# Stage 1: fetch the declared sources into the verified cache, preprocess into deterministic shards.


rule datasets:
    output:
        directory("data/{benchmark}"),
    params:
        options=datasets_options,
    conda:
        CONDA_ENV
    log:
        "logs/datasets/{benchmark}.log",
    shell:
        "benchpipe datasets prepare --benchmark {wildcards.benchmark} --out {output} {params.options} > {log} 2>&1"
