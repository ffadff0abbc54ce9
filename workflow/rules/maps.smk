rule maps:
    input:
        pairs=f"{OUT}/pairs.csv",
    output:
        manifest=f"{OUT}/maps/{{features}}/manifest{{chunk}}.csv",
    params:
        root=lambda w: ROOT,
        options=lambda w: features_options(w.features),
        chunk=lambda w: f"{w.chunk}/{NCHUNKS}",
        maxpts=MAXPTS,
        seed=SEED,
        outdir=lambda w: f"{OUT}/maps/{w.features}",
    threads: 2
    log:
        f"{OUT}/logs/maps/{{features}}_{{chunk}}.log",
    conda:
        ENV
    shell:
        "nre maps --pairs {input.pairs} --root {params.root} --features {wildcards.features}"
        " --features-options '{params.options}' --chunk {params.chunk} --max-points {params.maxpts}"
        " --seed {params.seed} --threads {threads} --out-dir {params.outdir}"
        " --manifest {output.manifest} > {log} 2>&1"
