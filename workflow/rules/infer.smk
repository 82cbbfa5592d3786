# Stage 3: LoadGen. Per scenario, a calibration measures the served model and writes the
# user.conf that the scenario's tests start from; then one test per job: performance, accuracy
# and, in the closed division, the TEST01 and TEST04 compliance runs. A performance run corrects
# its user.conf when LoadGen names a setting that made it INVALID (docs/inference.md), so the
# compliance runs, which must run exactly as it did, wait for it and take its user.conf.

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
        performance_conf=performance_conf_input,
        target=TARGET_FILE,
        image=image_record,
        images_first=IMAGES_FIRST,
    output:
        directory("runs/{target}/{benchmark}/infer/{scenario}/{mode}"),
    params:
        run_inputs=lambda wildcards: " ".join(f"--input {m}" for m in served_model_input(wildcards)),
        conf_input=lambda wildcards, input: " ".join(f"--input {p}" for p in input.performance_conf),
        user_conf=lambda wildcards, input: " ".join(f"--user-conf {p}" for p in input.performance_conf),
        config_env=INFER_CONFIG_ENV,
        images=IMAGES_DIR,
    threads: target_threads
    resources:
        **TARGET_RESOURCES,
    # A timed test LoadGen judges INVALID, and the harness cannot correct, fails and keeps nothing
    # (docs/inference.md): one stall of a shared machine can sink a short Server run, so it runs
    # again with the same user.conf.
    retries: 2
    conda:
        CONDA_ENV
    log:
        "logs/infer/{target}/{benchmark}/{scenario}/{mode}.log",
    shell:
        "{params.config_env} benchpipe run --images {params.images:q}"
        " --target-file {input.target} --input {input.data} --input {input.calibration}"
        " {params.conf_input} {params.run_inputs} --output {output} -- benchpipe infer"
        " --benchmark {wildcards.benchmark} --data {input.data} --calibration {input.calibration}"
        " {params.user_conf} --scenario {wildcards.scenario} --mode {wildcards.mode} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule performance_conf:
    input:
        "runs/{target}/{benchmark}/infer/{scenario}/performance",
    output:
        PERFORMANCE_CONF,
    # A copy: no job's worth of queueing on a cluster, and no container.
    localrule: True
    conda:
        CONDA_ENV
    log:
        "logs/performance_conf/{target}/{benchmark}/{scenario}.log",
    shell:
        "cp {input}/user.conf {output} > {log} 2>&1"
