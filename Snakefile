# The NRE benchmark workflow: scenes -> pairs -> maps -> estimates -> evaluate -> select -> tables, figures, report.
# Rules are thin: each calls one `nre` subcommand. Resources live in workflow/profiles/, never in the config.
from snakemake.utils import validate


# config/config.yaml unless --configfile is given: a CLI config file replaces it (no key-by-key merge, so a
# smaller config's estimator list is not extended by the default's).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


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
