# The NRE benchmark workflow: scenes -> pairs -> maps -> estimates -> evaluate -> select -> tables, figures, report.
# Rules only wire: each calls one `nre` subcommand with what the job plan (nre.workflow.plan) gives it. Resources
# live in workflow/profiles/, never in the config (the GPU request follows the feature backend: resource gpu).
from nre.features import backend_uses_gpu  # which feature backends get a GPU on a cluster (resource gpu)
from nre.workflow.plan import workflow_plan


# config/config.yaml unless --configfile is given. Several files layer in order (`--configfile config/config.yaml
# my.yaml`: my.yaml's keys override, its estimators join the default's).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# Checked before any rule is built (dry runs included): duplicate YAML keys, schema, data sources, backends and
# their checkpoint files, estimators' classes / presets / options / grids; one line naming the file and key. The
# schema's defaults are filled in here, and the plan decides every job.
PLAN = workflow_plan(workflow, config)


onstart:
    # SLURM: every job's CPUs / memory / GPUs against sinfo's nodes before anything is submitted (a job no node can
    # run would stay PENDING forever, unreported); jobs themselves run with --no-hooks
    if workflow.executor_plugin is not None and workflow.executor_plugin.name == "slurm":
        from nre.workflow.cluster import check_workflow

        check_workflow(workflow)
    # OUT/logs/run.json and the journal that `nre status OUT` reads; the terminal: a failed job in one line naming
    # its log, Ctrl-C in one line (Snakemake's log file under .snakemake/log keeps every message)
    from nre.workflow.status import on_start

    on_start(workflow, PLAN.out, PLAN.n_chunks)


onsuccess:
    # where the report is
    from nre.workflow.status import on_success

    on_success(workflow, PLAN.out)


onerror:
    # one line per failed job (its error line, its log); after Ctrl-C one line
    from nre.workflow.status import on_error

    on_error(workflow, PLAN.out)


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
        f"{OUT}/regress.txt" if config["regress"] else [],
