# Stage 1: fetch the declared sources, verify their sha256, write deterministic Parquet shards.


rule datasets:
    output:
        directory("data/{benchmark}"),
    params:
        cache=lambda wildcards: (
            f"--cache-dir {shlex.quote(config['datasets']['cache_dir'])}" if config["datasets"]["cache_dir"] else ""
        ),
    conda:
        CONDA_ENV
    log:
        "logs/datasets/{benchmark}.log",
    shell:
        "benchpipe datasets --benchmark {wildcards.benchmark} --out {output} {params.cache} > {log} 2>&1"
