if config["data"].get("synth"):

    rule scenes:
        output:
            f"{ROOT}/scenes.yaml",
        params:
            preset=config["data"]["synth"]["preset"],
            seed=config["data"]["synth"].get("seed", SEED),
        log:
            f"{OUT}/logs/scenes.log",
        shell:
            "nre synth --out {ROOT} --preset {params.preset} --seed {params.seed} > {log} 2>&1"


def _scene_args():
    d = config["data"]
    a = f"--scenes {' '.join(d['test_scenes'])}" if d.get("test_scenes") else "--split test"
    if d.get("tuning_scenes") is not None:
        a += f" --tuning-scenes {' '.join(d['tuning_scenes'])}"
    return a


rule pairs:
    input:
        f"{ROOT}/scenes.yaml" if config["data"].get("synth") else [],
    output:
        table=f"{OUT}/pairs.csv",
        summary=f"{OUT}/pairs.summary.json",
        hist=report(f"{OUT}/pairs.hist.png", caption="../report/pairs.rst", category="Data"),
    params:
        scenes=_scene_args(),
        p=config["pairs"],
    log:
        f"{OUT}/logs/pairs.log",
    shell:
        "nre pairs --root {ROOT} {params.scenes} --n-pairs {params.p[n_test]} --n-tuning {params.p[n_tuning]}"
        " --min-covisible {params.p[min_covisible]} --distance {params.p[distance]} --seed {SEED}"
        " --out {output.table} > {log} 2>&1"
