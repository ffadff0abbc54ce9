# The NRE benchmark workflow: scenes -> pairs -> maps -> estimates -> tables, figures, report.
# Rules are thin: each calls one `nre` subcommand. Resources live in workflow/profiles/.
from snakemake.utils import validate


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/maps.smk"
include: "workflow/rules/estimate.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        f"{OUT}/eval/table1_paper.md",
        f"{OUT}/report.html",
