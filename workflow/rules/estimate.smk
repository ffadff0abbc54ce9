rule estimate:
    """One job per (features, estimator, chunk): all the estimator's sweep values in-process. The estimator's grid
    and options are params, so changing one estimator's entry reruns only its jobs (rerun trigger `params`)."""
    input:
        pairs=f"{OUT}/pairs.csv",
        manifest=f"{OUT}/maps/{{features}}/manifest{{chunk}}.csv",
    output:
        f"{OUT}/rows/{{features}}/{{estimator}}/chunk{{chunk}}.parquet",
    params:
        root=lambda w: ROOT,
        cls=lambda w: PLAN.estimator_args(w.estimator)["cls"],
        grid=lambda w: PLAN.estimator_args(w.estimator)["grid"],
        options=lambda w: PLAN.estimator_args(w.estimator)["options"],
        repeat=lambda w: PLAN.estimator_args(w.estimator)["repeat"],
        foptions=lambda w: features_options(w.features),
        chunk=lambda w: f"{w.chunk}/{NCHUNKS}",
        maxpts=MAXPTS,
        seed=SEED,
        mapsdir=lambda w: f"{OUT}/maps/{w.features}",
    threads: 1
    log:
        f"{OUT}/logs/estimate/{{features}}_{{estimator}}_{{chunk}}.log",
    conda:
        ENV
    shell:
        "nre estimate --pairs {input.pairs:q} --root {params.root:q} --maps-dir {params.mapsdir:q}"
        " --features {wildcards.features:q} --features-options {params.foptions:q}"
        " --estimator {params.cls:q} --name {wildcards.estimator:q} {params.grid:q} --options {params.options:q}"
        " --repeat {params.repeat:q}"
        " --chunk {params.chunk:q} --max-points {params.maxpts:q} --seed {params.seed:q} --threads {threads}"
        " --out {output:q} > {log:q} 2>&1"
