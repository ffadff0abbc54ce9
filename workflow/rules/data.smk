if config["data"].get("synth"):

    rule scenes:
        output:
            f"{ROOT}/scenes.yaml",
        params:
            root=lambda w, output: os.path.dirname(output[0]),
            preset=config["data"]["synth"]["preset"],
            seed=config["data"]["synth"].get("seed", SEED),
        log:
            f"{OUT}/logs/scenes.log",
        conda:
            ENV
        shell:
            "nre synth --out {params.root} --preset {params.preset} --seed {params.seed} > {log} 2>&1"


rule pairs:
    input:
        f"{ROOT}/scenes.yaml" if config["data"].get("synth") else [],
    output:
        table=f"{OUT}/pairs.csv",
        summary=f"{OUT}/pairs.summary.json",
        hist=report(f"{OUT}/pairs.hist.png", caption="../report/pairs.rst", category="Data"),
    params:
        root=lambda w: ROOT,
        scenes=_scene_args(),
        p=config["pairs"],
        seed=SEED,
    log:
        f"{OUT}/logs/pairs.log",
    conda:
        ENV
    shell:
        "nre pairs --root {params.root} {params.scenes} --n-pairs {params.p[n_test]} --n-tuning {params.p[n_tuning]}"
        " --min-covisible {params.p[min_covisible]} --distance {params.p[distance]} --seed {params.seed}"
        " --out {output.table} > {log} 2>&1"
