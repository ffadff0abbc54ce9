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
        # only the Table 1 backends feed the RE estimators; on the others only coarse-to-fine NRE runs, which
        # needs the coarse maps and computes its own fine windows: no dense-level matches, no fine features here
        matches=lambda w: [] if w.features in PLAN.table1 else ["--no-matches"],
    threads: 2
    resources:
        gpu=lambda w: int(backend_uses_gpu(w.features)),  # networks: 1 (SLURM: --gpus=1); dense SIFT: 0
    priority: 10  # every chunk's maps first: each unlocks a chunk's worth of estimator jobs to pack the cores with
    log:
        f"{OUT}/logs/maps/{{features}}_{{chunk}}.log",
    conda:
        ENV
    shell:
        "nre maps --pairs {input.pairs:q} --root {params.root:q} --features {wildcards.features:q}"
        " --features-options {params.options:q} --chunk {params.chunk:q} --max-points {params.maxpts:q}"
        " --seed {params.seed:q} --threads {threads} --out-dir {params.outdir:q}"
        " --manifest {output.manifest:q} {params.matches:q} > {log:q} 2>&1"
