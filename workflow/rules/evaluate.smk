rule evaluate:
    input:
        all_rows(),
    output:
        table1=report(f"{OUT}/eval/table1_paper.md", caption="../report/table1.rst", category="Tables"),
        fair=f"{OUT}/eval/table1_fair.md",
        table2=f"{OUT}/eval/table2.md",
        fig5=report(f"{OUT}/eval/fig5_ablation_hard.png", caption="../report/fig5.rst", category="Figures"),
        sweeps=report(f"{OUT}/eval/sweeps.png", caption="../report/sweeps.rst", category="Figures"),
        rows=f"{OUT}/eval/rows.parquet",
    params:
        thr=jdump(config["thresholds"]),
        metric=config["selection"]["metric"],
        boot=config["selection"].get("bootstrap", 1000),
    log:
        f"{OUT}/logs/evaluate.log",
    shell:
        "nre evaluate --rows {input} --out-dir {OUT}/eval --thresholds '{params.thr}' --table1-features {T1}"
        " --metric {params.metric} --bootstrap {params.boot} --seed {SEED} > {log} 2>&1"


rule report_html:
    input:
        table1=f"{OUT}/eval/table1_paper.md",
        pairs=f"{OUT}/pairs.csv",
    output:
        report(f"{OUT}/report.html", caption="../report/html.rst", category="Report"),
    log:
        f"{OUT}/logs/report.log",
    shell:
        "nre report --eval-dir {OUT}/eval --pairs {input.pairs} --config-name '{config[name]}' --out {output} > {log} 2>&1"
