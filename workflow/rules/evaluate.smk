rule evaluate:
    input:
        all_rows(),
    output:
        table1=report(f"{OUT}/eval/table1_paper.md", caption="../report/table1.rst", category="Tables"),
        fair=f"{OUT}/eval/table1_fair.md",
        table2=f"{OUT}/eval/table2.md",
        rates=f"{OUT}/eval/failure_rates.csv",
        fig5=report(f"{OUT}/eval/fig5_ablation_hard.png", caption="../report/fig5.rst", category="Figures"),
        sweeps=report(f"{OUT}/eval/sweeps.png", caption="../report/sweeps.rst", category="Figures"),
        rows=f"{OUT}/eval/rows.parquet",
    params:
        outdir=lambda w, output: os.path.dirname(output.table1),
        thr=jdump(config["thresholds"]),
        metric=config["selection"]["metric"],
        boot=config["selection"].get("bootstrap", 1000),
        t1=T1,
        seed=SEED,
    log:
        f"{OUT}/logs/evaluate.log",
    conda:
        ENV
    shell:
        "nre evaluate --rows {input} --out-dir {params.outdir} --thresholds '{params.thr}' --table1-features {params.t1}"
        " --metric {params.metric} --bootstrap {params.boot} --seed {params.seed} > {log} 2>&1"


rule report_html:
    input:
        table1=f"{OUT}/eval/table1_paper.md",
        table3=f"{OUT}/eval/table3.md",
        pairs=f"{OUT}/pairs.csv",
    output:
        report(f"{OUT}/report.html", caption="../report/html.rst", category="Report"),
    params:
        evaldir=lambda w, input: os.path.dirname(input.table1),
        name=config["name"],
    log:
        f"{OUT}/logs/report.log",
    conda:
        ENV
    shell:
        "nre report --eval-dir {params.evaldir} --pairs {input.pairs} --config-name '{params.name}' --out {output}"
        " > {log} 2>&1"


rule regress:
    input:
        rates=f"{OUT}/eval/failure_rates.csv",
    output:
        f"{OUT}/regress.txt",
    params:
        ref=f"results/{config['name']}",
        evaldir=lambda w, input: os.path.dirname(input.rates),
        configfile=workflow.configfiles[-1],
    log:
        f"{OUT}/logs/regress.log",
    conda:
        ENV
    shell:
        "nre regress --reference {params.ref} --current {params.evaldir} --config {params.configfile}"
        " --out {output} > {log} 2>&1"


rule timing:
    """Table 3: per-stage time and memory on a few test pairs, in a job that takes every core (runs alone)."""
    input:
        pairs=f"{OUT}/pairs.csv",
    output:
        timing=f"{OUT}/eval/timing.csv",
        table3=report(f"{OUT}/eval/table3.md", caption="../report/table3.rst", category="Tables"),
    params:
        root=lambda w: ROOT,
        features=T1,
        foptions=features_options(T1),
        n=config.get("timing", {}).get("n_pairs", 10),
        maxpts=MAXPTS,
        seed=SEED,
    threads: workflow.cores
    log:
        f"{OUT}/logs/timing.log",
    conda:
        ENV
    shell:
        "nre timing --pairs {input.pairs} --root {params.root} --features {params.features}"
        " --features-options '{params.foptions}' --n-pairs {params.n} --max-points {params.maxpts} --seed {params.seed}"
        " --threads 2 --out {output.timing} > {log} 2>&1"
