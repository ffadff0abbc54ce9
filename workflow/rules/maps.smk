rule maps:
    input:
        pairs=f"{OUT}/pairs.csv",
    output:
        manifest=f"{OUT}/maps/{{features}}/manifest{{chunk}}.csv",
    params:
        options=lambda w: features_options(w.features),
    threads: 2
    log:
        f"{OUT}/logs/maps/{{features}}_{{chunk}}.log",
    shell:
        "nre maps --pairs {input.pairs} --root {ROOT} --features {wildcards.features}"
        " --features-options '{params.options}' --chunk {wildcards.chunk}/{NCHUNKS} --max-points {MAXPTS}"
        " --seed {SEED} --threads {threads} --out-dir {OUT}/maps/{wildcards.features}"
        " --manifest {output.manifest} > {log} 2>&1"
