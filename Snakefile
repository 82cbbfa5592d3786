# benchpipe: `snakemake --cores all submit` runs every stage of an MLPerf-style submission.
# Data flow, one rule file per stage:
#   images, datasets -> train -> infer, mobile -> parse -> package   (workflow/rules/<stage>.smk)
#   then, on demand: audit (`snakemake --cores all audit`), report (`snakemake --cores all report`),
#   published results and the tree's ranks among them (published.enabled, or `snakemake compare`)

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# Fails before any job runs, naming the offending key; defaults are filled in.
try:
    validate(config, "schemas/config.schema.json")
except WorkflowError:
    # snakemake's message quotes the whole schema; say which key is wrong in one line.
    from benchpipe.contracts.config import explain_invalid_config

    raise WorkflowError(f"invalid config: {explain_invalid_config(config)}") from None


include: "workflow/rules/common.smk"


# On a cluster these run where snakemake runs (the login node), not as jobs: images need the
# registry, the wheel index and the engine; the rest only read and write small files, and a
# job's queueing would cost more than its work.
localrules:
    wheelhouse,
    image,
    sif,
    parse,
    package,
    submit,
    audit,
    report,

include: "workflow/rules/images.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/mobile.smk"
include: "workflow/rules/parse.smk"
include: "workflow/rules/package.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/published.smk"


rule submit:
    default_target: True
    input:
        f"{SUBMISSION_TREE}.verified",
        # Off by default: the published results and the tree's ranks among them.
        [f"{SUBMISSION_TREE}.compare.txt"] if config["published"]["enabled"] else [],


# Snakemake inspects the signature of an input, param or resource function on each of its
# calls: thousands of inspect.signature calls for a DAG of 1,000 jobs, a tenth of its dry run.
# Its own hook for a function's parameters takes each one's once, as inspect gives them.
sign_rule_functions(workflow.rules)
