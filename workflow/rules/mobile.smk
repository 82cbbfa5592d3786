# The Mobile family: the served model converted to LiteRT once per precision (and the app's own
# models the user supplies, checked), then each of the Mobile app's tasks (its tasks.pbtxt) run as
# the app runs it on every Mobile target, and each target's runs gathered into the app's extended
# result JSON (docs/mobile.md).


rule mobile_app:
    output:
        directory("data/mobile_app"),
    params:
        options=options.mobile_app(config, host_targets=bool(MOBILE_HOST_TARGETS)),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "logs/mobile/app.log",
    shell:
        "benchpipe mobile app --out {output} {params.options} > {log} 2>&1"


rule tflite:
    input:
        data=data_input,
        model=mobile_model_input,
        target=MOBILE_MODEL_TARGET_FILE,
        image=mobile_model_image,
        images_first=IMAGES_FIRST,
    output:
        directory("runs/tflite/{benchmark}/{precision}"),
    params:
        model=mobile_model_option,
        run_inputs=lambda wildcards, input: " ".join(f"--input {m}" for m in input.model),
        samples=config["mobile"]["representative_samples"],
        seed=config["training"]["seed"],
        config_env=MOBILE_CONFIG_ENV,
        images=IMAGES_DIR,
    conda:
        CONDA_ENV
    log:
        "logs/mobile/tflite/{benchmark}/{precision}.log",
    shell:
        "{params.config_env} benchpipe run --images {params.images:q} --target-file {input.target}"
        " --input {input.data} {params.run_inputs} --output {output} -- benchpipe mobile convert --benchmark {wildcards.benchmark}"
        " --data {input.data} {params.model} --precision {wildcards.precision}"
        " --representative-samples {params.samples} --seed {params.seed} --out {output} > {log} 2>&1"


# A model the user supplies (mobile.supplied), checked against the sha256 they state and laid out
# as a conversion is.
rule mobile_supply:
    input:
        tflite=supplied_tflite,
    output:
        directory("runs/tflite/supplied/{benchmark}/{precision}"),
    params:
        sha256=supplied_sha256,
    localrule: True
    conda:
        CONDA_ENV
    log:
        "logs/mobile/supply/{benchmark}/{precision}.log",
    shell:
        "benchpipe mobile supply --tflite {input.tflite:q} --sha256 {params.sha256} --precision {wildcards.precision}"
        " --out {output} > {log} 2>&1"


rule mobile_run:
    input:
        data=mobile_data_input,
        app="data/mobile_app",
        model=mobile_run_model,
        target=TARGET_FILE,
        image=image_record,
        images_first=IMAGES_FIRST,
    output:
        directory("runs/{target}/{benchmark}/mobile/{precision}/{task}/{mode}"),
    params:
        run_mode=MOBILE_RUN_MODE,
        delegate=lambda wildcards, threads: options.mobile_delegate(TARGET_SPECS[wildcards.target], threads),
        samples=options.mobile_samples(config),
        serving=lambda wildcards: options.mobile_serving(config, wildcards.benchmark),
        config_env=MOBILE_CONFIG_ENV,
        images=IMAGES_DIR,
    threads: target_threads
    resources:
        **TARGET_RESOURCES,
    # A timed run that LoadGen judges INVALID keeps nothing (one stall of a shared host): it runs again.
    retries: 2
    conda:
        CONDA_ENV
    log:
        "logs/mobile/{target}/{benchmark}/{precision}/{task}/{mode}.log",
    shell:
        "{params.config_env} benchpipe run --images {params.images:q} --target-file {input.target} --input {input.data}"
        " --input {input.app} --input {input.model} --output {output} -- benchpipe mobile run"
        " {params.serving} --data {input.data:q} --tasks {input.app}/tasks.json"
        " --task {wildcards.task} --model {input.model} --mode {wildcards.mode} --run-mode {params.run_mode}"
        " {params.delegate} {params.samples} --out {output} > {log} 2>&1"


rule mobile_result:
    input:
        app="data/mobile_app",
        runs=mobile_result_runs,
        # int8 is judged against the fp32 model's accuracy on the same samples.
        reference=mobile_reference_runs,
        target=TARGET_FILE,
    output:
        directory("runs/{target}/{benchmark}/mobile/{precision}/result"),
    params:
        official="--official" if config["mobile"]["official"] else "",
    localrule: True
    conda:
        CONDA_ENV
    log:
        "logs/mobile/{target}/{benchmark}/{precision}/result.log",
    shell:
        "benchpipe mobile result --app {input.app} --target-file {input.target} --runs {input.runs}"
        " --reference-runs {input.reference} {params.official} --out {output} > {log} 2>&1"
