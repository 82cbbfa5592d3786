# Stage 0: container images. The wheels of each image's hash lock are downloaded once and
# checked; the image is built from them and the base image with the network off, and its
# record (id, digest, base, lock and wheel hashes) is an input of every job that runs in it,
# so a changed lock, Dockerfile or benchpipe source rebuilds the image and reruns those jobs.


rule wheelhouse:
    input:
        lock=recipe_path("{image}", "requirements.lock"),
    output:
        directory("wheelhouse/{image}"),
    conda:
        CONDA_ENV
    log:
        "logs/images/wheelhouse-{image}.log",
    shell:
        "benchpipe image wheelhouse --lock {input.lock} --out {output} > {log} 2>&1"


rule image:
    input:
        dockerfile=recipe_path("{image}", "Dockerfile"),
        lock=recipe_path("{image}", "requirements.lock"),
        wheels="wheelhouse/{image}",
        source=PACKAGE_SOURCES,
        pyproject=Path(workflow.basedir, "pyproject.toml"),
    output:
        f"{IMAGES_DIR}/{{engine}}/{{image}}.json",
    params:
        recipe=lambda wildcards, input: Path(input.dockerfile).parent,
        project=lambda wildcards, input: Path(input.pyproject).parent,
        base=config["containers"]["base_image"],
    # A build takes the machine: nothing it would slow down is measured alongside it.
    threads: all_cores() or 1
    conda:
        CONDA_ENV
    log:
        "logs/images/{engine}-{image}.log",
    shell:
        "benchpipe image build --engine {wildcards.engine} --recipe {params.recipe}"
        " --wheelhouse {input.wheels} --project {params.project} --base {params.base:q}"
        " --out {output} > {log} 2>&1"


rule sif:
    input:
        f"{IMAGES_DIR}/{SIF_SOURCE}/{{image}}.json",
    output:
        record=f"{IMAGES_DIR}/apptainer/{{image}}.json",
        sif=f"{IMAGES_DIR}/apptainer/{{image}}.sif",
    threads: all_cores() or 1
    conda:
        CONDA_ENV
    log:
        "logs/images/apptainer-{image}.log",
    shell:
        "benchpipe image sif --source-record {input} --out {output.record} > {log} 2>&1"
