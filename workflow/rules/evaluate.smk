rule evaluate:
    """Result rows -> evaluated rows (renderer-truth errors too on synthetic scenes) and failure rates."""
    input:
        rows=PLAN.rows_files(),
        pairs=f"{OUT}/pairs.csv",
    output:
        rows=f"{EVAL}/rows.parquet",
        rates=f"{EVAL}/failure_rates.csv",
        thresholds=f"{EVAL}/thresholds.json",
    params:
        outdir=lambda w, output: os.path.dirname(output.rates),
        thr=jdump(config["thresholds"]),
        root=lambda w: ROOT,
        info=INFO,
    log:
        f"{OUT}/logs/evaluate.log",
    conda:
        ENV
    shell:
        "nre evaluate --rows {input.rows:q} --pairs {input.pairs:q} --root {params.root:q} --out-dir {params.outdir:q}"
        " --thresholds {params.thr:q} --info {params.info:q} > {log:q} 2>&1"


rule select:
    """Hyperparameter selection, both protocols (paper: best on test; fair: best on tuning, applied to test)."""
    input:
        rates=f"{EVAL}/failure_rates.csv",
    output:
        md=f"{EVAL}/selection.md",
        html=report(f"{EVAL}/selection.html", caption="../report/selection.rst", category="Tables"),
        csv=f"{EVAL}/selection.csv",
    params:
        outdir=lambda w, input: os.path.dirname(input.rates),
        metric=config["selection"]["metric"],
        info=INFO,
    log:
        f"{OUT}/logs/select.log",
    conda:
        ENV
    shell:
        "nre evaluate --select --out-dir {params.outdir:q} --metric {params.metric:q} --info {params.info:q}"
        " > {log:q} 2>&1"


rule tables:
    """Tables 1-2, summary, headline, seeds, diagnostics, Fig. 5 curves, sweep plots. Snakemake's report shows each
    table's HTML page (it previews HTML, images and PDF; a Markdown file would only be offered for download)."""
    input:
        rows=f"{EVAL}/rows.parquet",
        sel=f"{EVAL}/selection.csv",
        pairs=f"{OUT}/pairs.csv",
    output:
        table1=f"{EVAL}/table1_paper.md",
        tables=[f"{EVAL}/{t}.md" for t in TABLES],
        table1_html=report(f"{EVAL}/table1_paper.html", caption="../report/table1.rst", category="Tables"),
        fair_html=report(f"{EVAL}/table1_fair.html", caption="../report/table1_fair.rst", category="Tables"),
        more_table1=[
            report(f"{EVAL}/table1_{p}_{f}.html", caption=f"../report/table1{'' if p == 'paper' else '_fair'}.rst",
                   category="Tables")
            for f in PLAN.table1[1:] for p in ("paper", "fair")
        ],  # fmt: skip
        headline=report(f"{EVAL}/headline.html", caption="../report/headline.rst", category="Tables"),
        table2=report(f"{EVAL}/table2.html", caption="../report/table2.rst", category="Tables"),
        summary=report(f"{EVAL}/summary.html", caption="../report/summary.rst", category="Tables"),
        seeds=report(f"{EVAL}/seeds.html", caption="../report/seeds.rst", category="Tables"),
        reasons=report(f"{EVAL}/failure_reasons.html", caption="../report/diagnostics.rst", category="Diagnostics"),
        cost=report(f"{EVAL}/cost_summary.html", caption="../report/diagnostics.rst", category="Diagnostics"),
        inliers=report(f"{EVAL}/inlier_ratios.png", caption="../report/diagnostics.rst", category="Diagnostics"),
        truth=report(f"{EVAL}/truth_comparison.html", caption="../report/truth.rst", category="Diagnostics"),
        fig5=report(f"{EVAL}/fig5_ablation_hard.png", caption="../report/fig5.rst", category="Figures"),
        fig5_all=[
            report(f"{EVAL}/fig5_estimators_{cat}.png", caption="../report/fig5.rst", category="Figures")
            for cat in ("easy", "medium", "hard")
        ],
        sweeps=report(f"{EVAL}/sweeps.png", caption="../report/sweeps.rst", category="Figures"),
        summary_csv=f"{EVAL}/summary.csv",
        study=f"{EVAL}/study.json",
    params:
        evaldir=lambda w, input: os.path.dirname(input.rows),
        info=INFO,
        recall=jdump(config["recall_thresholds"]),
        boot=config["selection"]["bootstrap"],
        seed=SEED,
    log:
        f"{OUT}/logs/tables.log",
    conda:
        ENV
    shell:
        "nre tables --eval-dir {params.evaldir:q} --info {params.info:q} --recall-thresholds {params.recall:q}"
        " --bootstrap {params.boot:q} --seed {params.seed:q} > {log:q} 2>&1"


if FIG4:

    rule map_pictures:
        """Fig. 4-style pictures of the maps of a few test pairs (dense loss, robust loss, reprojection pmf). They need
        no estimator result, so they are drawn while the estimators run, not after them."""
        input:
            SCENES,
            pairs=f"{OUT}/pairs.csv",
        output:
            [report(f, caption="../report/fig4.rst", category="Figures") for f in FIG4],
        params:
            evaldir=lambda w, output: os.path.dirname(output[0]),
            t1=T1,
            foptions=features_options(T1),
            npics=len(FIG4),
            root=lambda w: ROOT,
            maxpts=MAXPTS,
            seed=SEED,
        resources:
            gpu=int(backend_uses_gpu(T1)),  # the Table 1 backend's features: a GPU for a network, none for dsift
        priority: -10  # fills a core left idle, e.g. next to the single-core tables job at the end
        log:
            f"{OUT}/logs/map_pictures.log",
        conda:
            ENV
        shell:
            "nre tables --no-tables --eval-dir {params.evaldir:q} --table1-features {params.t1:q} --seed {params.seed:q}"
            " --map-pictures {params.npics:q} --pairs {input.pairs:q} --root {params.root:q}"
            " --features-options {params.foptions:q} --max-points {params.maxpts:q} > {log:q} 2>&1"


rule timing_stages:
    """Table 3, pipeline stages (features, maps, dense argmax, NRE initialisation / coarse / fine refinement) on a few
    test pairs, in a job that takes every core so that no other job of this workflow runs next to it; records wall
    and CPU time, memory and the threads used."""
    input:
        SCENES,
        pairs=f"{OUT}/pairs.csv",
    output:
        f"{EVAL}/timing/stages.csv",
    params:
        root=lambda w: ROOT,
        features=T1,
        foptions=features_options(T1),
        n=PLAN.timing_pairs,
        maxpts=MAXPTS,
        seed=SEED,
    threads: ALL_CORES
    resources:
        gpu=int(backend_uses_gpu(T1)),  # times the Table 1 backend's feature extraction
    log:
        f"{OUT}/logs/timing/stages.log",
    conda:
        ENV
    shell:
        "nre timing --pairs {input.pairs:q} --root {params.root:q} --features {params.features:q}"
        " --features-options {params.foptions:q} --n-pairs {params.n:q} --max-points {params.maxpts:q}"
        " --seed {params.seed:q} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule timing_estimator:
    """Table 3, one estimator at its default setting on the same pairs and on the run's cached maps (what nre estimate
    reads), alone (every core)."""
    input:
        SCENES,
        pairs=f"{OUT}/pairs.csv",
        manifests=[f"{OUT}/maps/{T1}/manifest{c}.csv" for c in CHUNKS],
    output:
        f"{EVAL}/timing/estimator_{{estimator}}.csv",
    params:
        root=lambda w: ROOT,
        maps=lambda w, input: os.path.dirname(input.manifests[0]),
        features=T1,
        foptions=features_options(T1),
        spec=lambda w: PLAN.timing_spec(w.estimator),
        n=PLAN.timing_pairs,
        maxpts=MAXPTS,
        seed=SEED,
    threads: ALL_CORES
    log:
        f"{OUT}/logs/timing/estimator_{{estimator}}.log",
    conda:
        ENV
    shell:
        "nre timing --pairs {input.pairs:q} --root {params.root:q} --features {params.features:q}"
        " --features-options {params.foptions:q} --estimators {params.spec:q} --no-stages --n-pairs {params.n:q}"
        " --maps-dir {params.maps:q}"
        " --max-points {params.maxpts:q} --seed {params.seed:q} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule table3:
    """Table 3: the timings merged (median per stage / estimator)."""
    input:
        f"{EVAL}/timing/stages.csv",
        [f"{EVAL}/timing/estimator_{e}.csv" for e in TIMED],
    output:
        timing=f"{EVAL}/timing.csv",
        table3=f"{EVAL}/table3.md",
        table3_html=report(f"{EVAL}/table3.html", caption="../report/table3.rst", category="Tables"),
    params:
        info=INFO,
    log:
        f"{OUT}/logs/table3.log",
    conda:
        ENV
    shell:
        "nre timing --merge {input:q} --out {output.timing:q} --info {params.info:q} > {log:q} 2>&1"


rule report_html:
    """The self-contained HTML report of everything above."""
    input:
        table1=f"{EVAL}/table1_paper.md",
        table3=f"{EVAL}/table3.html" if TIMING else [],
        fig4=FIG4,
        pairs=f"{OUT}/pairs.csv",
    output:
        report(f"{OUT}/report.html", caption="../report/html.rst", category="Report"),
    params:
        evaldir=lambda w, input: os.path.dirname(input.table1),
        name=config["name"],
        info=INFO,
    log:
        f"{OUT}/logs/report.log",
    conda:
        ENV
    shell:
        "nre report --eval-dir {params.evaldir:q} --pairs {input.pairs:q} --config-name {params.name:q} --out {output:q}"
        " --info {params.info:q} > {log:q} 2>&1"


rule regress:
    """Compare with the committed reference results/<name> (fails on moved rates or a stale reference)."""
    input:
        rates=f"{EVAL}/failure_rates.csv",
        summary=f"{EVAL}/summary.csv",
        pairs=f"{OUT}/pairs.csv",
    output:
        f"{OUT}/regress.txt",
    params:
        ref=f"results/{config['name']}",
        evaldir=lambda w, input: os.path.dirname(input.rates),
        configfiles=[str(f) for f in workflow.configfiles] or ["config/config.yaml"],  # layered in order
        overrides=overrides_option(PLAN),  # --config key=value: part of the study the digest must match
    log:
        f"{OUT}/logs/regress.log",
    conda:
        ENV
    shell:
        "nre regress --reference {params.ref:q} --current {params.evaldir:q} --config {params.configfiles:q}"
        " {params.overrides:q} --pairs {input.pairs:q} --out {output:q} > {log:q} 2>&1"
