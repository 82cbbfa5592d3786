# Stage 3: one LoadGen test per job, hence per process (LoadGen allows one test per process),
# serving the model of the first training run that reached the target.


rule infer:
    input:
        data=data_input,
        runs=train_runs,
        target=target_file,
        image=image_record,
        images_first=IMAGES_FIRST,
    output:
        directory("runs/{target}/{benchmark}/infer/{scenario}/{mode}"),
    params:
        min_duration_ms=config["inference"]["min_duration_ms"],
        run_inputs=lambda wildcards, input: " ".join(f"--input {r}" for r in input.runs),
    threads: workflow.cores
    conda:
        CONDA_ENV
    log:
        "logs/infer/{target}/{benchmark}/{scenario}/{mode}.log",
    shell:
        "benchpipe run --target-file {input.target} --input {input.data} {params.run_inputs}"
        " --output {output} -- benchpipe infer --benchmark {wildcards.benchmark} --data {input.data}"
        " --train-runs {input.runs} --scenario {wildcards.scenario} --mode {wildcards.mode}"
        " --min-duration-ms {params.min_duration_ms} --threads {threads} --out {output} > {log} 2>&1"
