rule estimate:
    input:
        pairs=f"{OUT}/pairs.csv",
        manifest=f"{OUT}/maps/{{features}}/manifest{{chunk}}.csv",
    output:
        f"{OUT}/rows/{{features}}/{{estimator}}/chunk{{chunk}}.parquet",
    params:
        spec=lambda w: estimator_spec(w.estimator),
        grid=lambda w: ("--grid '" + jdump(estimator_spec(w.estimator)["grid"]) + "'")
        if estimator_spec(w.estimator)["grid"]
        else "",
        options=lambda w: jdump(estimator_spec(w.estimator)["options"]),
        foptions=lambda w: features_options(w.features),
    threads: 1
    log:
        f"{OUT}/logs/estimate/{{features}}_{{estimator}}_{{chunk}}.log",
    shell:
        "nre estimate --pairs {input.pairs} --root {ROOT} --maps-dir {OUT}/maps/{wildcards.features}"
        " --features {wildcards.features} --features-options '{params.foptions}'"
        " --estimator {params.spec[cls]} {params.grid} --options '{params.options}'"
        " --chunk {wildcards.chunk}/{NCHUNKS} --max-points {MAXPTS} --seed {SEED} --threads {threads}"
        " --out {output} > {log} 2>&1"
