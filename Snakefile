# The NRE benchmark workflow: scenes -> pairs -> maps -> estimates -> evaluate -> select -> tables, figures, report.
# Rules are thin: each calls one `nre` subcommand. Resources live in workflow/profiles/, never in the config (the
# GPU request follows the feature backend: resource gpu in the rules, nre.features.backend_uses_gpu).
from nre.features import backend_uses_gpu  # which feature backends get a GPU on a cluster (resource gpu)


# config/config.yaml unless --configfile is given: a CLI config file replaces it (no key-by-key merge, so a
# smaller config's estimator list is not extended by the default's).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# The config is checked before any rule is built (dry runs included): schema, names, backends and their checkpoint
# files, estimators' classes / options / grids. A problem stops here with one line naming the file and key.
from nre.workflow.config import check_workflow_config

check_workflow_config(workflow, config, "workflow/schemas/config.schema.yaml")


onstart:
    # SLURM: every job's CPUs / memory / GPUs against sinfo's nodes before anything is submitted (a job no node can
    # run would stay PENDING forever, unreported); jobs themselves run with --no-hooks
    if workflow.executor_plugin is not None and workflow.executor_plugin.name == "slurm":
        from nre.workflow.cluster import check_workflow

        check_workflow(workflow)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/maps.smk"
include: "workflow/rules/estimate.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    """Every table, figure and the HTML report (and the regression check when `regress: true`). `train` and the
    reference update are separate targets."""
    input:
        f"{EVAL}/table1_paper.md",
        f"{OUT}/report.html",
        f"{OUT}/regress.txt" if config.get("regress", False) else [],
