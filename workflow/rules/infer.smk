# Stage 3: LoadGen. Per scenario, a calibration measures the served model and writes the
# user.conf that every test of the scenario runs with; then one test per job, hence per
# process (LoadGen allows one test per process): performance, accuracy and, in the closed
# division, the TEST01 and TEST04 compliance runs.


rule calibrate:
    input:
        data=data_input,
        model=served_model_input,
        target=TARGET_FILE,
        image=image_record,
        images_first=IMAGES_FIRST,
    output:
        directory("runs/{target}/{benchmark}/calibrate/{scenario}"),
    params:
        model=lambda wildcards: options.served_model(config, wildcards.benchmark, train_runs(wildcards)),
        kind=options.run_kind(config),
        run_inputs=lambda wildcards, input: " ".join(f"--input {m}" for m in input.model),
        config_env=INFER_CONFIG_ENV,
        images=IMAGES_DIR,
    threads: target_threads
    resources:
        **TARGET_RESOURCES,
    conda:
        CONDA_ENV
    log:
        "logs/calibrate/{target}/{benchmark}/{scenario}.log",
    shell:
        "{params.config_env} benchpipe run --images {params.images:q}"
        " --target-file {input.target} --input {input.data} {params.run_inputs}"
        " --output {output} -- benchpipe calibrate --benchmark {wildcards.benchmark} --data {input.data}"
        " {params.model} --scenario {wildcards.scenario} {params.kind} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule infer:
    input:
        data=data_input,
        # The calibration names the model it served, and depends on it: a changed model reruns
        # calibration, hence the tests; listing every run here again cost the DAG a second
        # per thousand jobs.
        calibration="runs/{target}/{benchmark}/calibrate/{scenario}",
        target=TARGET_FILE,
        image=image_record,
        images_first=IMAGES_FIRST,
    output:
        directory("runs/{target}/{benchmark}/infer/{scenario}/{mode}"),
    params:
        run_inputs=lambda wildcards: " ".join(f"--input {m}" for m in served_model_input(wildcards)),
        config_env=INFER_CONFIG_ENV,
        images=IMAGES_DIR,
    threads: target_threads
    resources:
        **TARGET_RESOURCES,
    # A timed test LoadGen judges INVALID fails and keeps nothing (docs/inference.md): one stall
    # of a shared machine can sink a short Server run, so it runs again with the same user.conf.
    retries: 2
    conda:
        CONDA_ENV
    log:
        "logs/infer/{target}/{benchmark}/{scenario}/{mode}.log",
    shell:
        "{params.config_env} benchpipe run --images {params.images:q}"
        " --target-file {input.target} --input {input.data} --input {input.calibration}"
        " {params.run_inputs} --output {output} -- benchpipe infer --benchmark {wildcards.benchmark}"
        " --data {input.data} --calibration {input.calibration} --scenario {wildcards.scenario}"
        " --mode {wildcards.mode} --threads {threads} --out {output} > {log} 2>&1"
