# Stage 2: seeded training runs, one job each. A run takes every core: time to train is
# the measurement, and two runs side by side would slow each other down.


rule train:
    input:
        data=data_input,
        target=TARGET_FILE,
        image=image_record,
        images_first=IMAGES_FIRST,
    output:
        directory("runs/{target}/{benchmark}/train/run_{run}"),
    params:
        seed=run_seed,
        org=SUBMISSION["submitter"],
        division=SUBMISSION["division"],
        status=SUBMISSION["status"],
        hyperparameters=lambda wildcards: options.hyperparameters(config, wildcards.benchmark),
        ruleset=config["training"]["ruleset"],
        config_env=TRAIN_CONFIG_ENV,
        images=IMAGES_DIR,
        across_nodes=across_nodes_option,
    threads: train_threads
    resources:
        **TRAIN_RESOURCES,
    conda:
        CONDA_ENV
    log:
        "logs/train/{target}/{benchmark}/run_{run}.log",
    shell:
        "{params.config_env} benchpipe run --images {params.images:q} {params.across_nodes}"
        " --target-file {input.target} --input {input.data} --input {input.target}"
        " --output {output} -- benchpipe train --benchmark {wildcards.benchmark} --data {input.data}"
        " --seed {params.seed} --org {params.org:q} --platform {wildcards.target}"
        " --division {params.division} --status {params.status} --target-file {input.target}"
        " {params.hyperparameters} --training-ruleset {params.ruleset} --threads {threads}"
        " --out {output} > {log} 2>&1"
