if config["data"]["synth"]:

    rule scenes:
        """The embedded default's tuning and test scenes (MegaDepth layout, renderer truth in <scene>/truth/)."""
        output:
            f"{ROOT}/scenes.yaml",
        params:
            root=lambda w, output: os.path.dirname(output[0]),
            preset=config["data"]["synth"]["preset"],
            seed=PLAN.source_seed("synth"),
        threads: ALL_CORES  # scenes render in parallel (nre synth --jobs)
        log:
            f"{OUT}/logs/scenes.log",
        conda:
            ENV
        shell:
            "nre synth --out {params.root:q} --preset {params.preset:q} --seed {params.seed:q} --splits tuning test"
            " --jobs {threads} > {log:q} 2>&1"

    rule train_scenes:
        """The embedded default's training scenes, in their own root ROOT/train: only the `train` target needs them."""
        output:
            TRAIN_SCENES,
        params:
            root=lambda w, output: os.path.dirname(output[0]),
            preset=config["data"]["synth"]["preset"],
            seed=PLAN.source_seed("synth"),
        threads: ALL_CORES
        log:
            f"{OUT}/logs/train_scenes.log",
        conda:
            ENV
        shell:
            "nre synth --out {params.root:q} --preset {params.preset:q} --seed {params.seed:q} --splits train"
            " --jobs {threads} > {log:q} 2>&1"


if SFM:

    rule sfm:
        """The scene of data.sfm.images reconstructed with pycolmap (nre sfm) into ROOT/<scene>, undistorted
        MegaDepth layout. Single-threaded by default: the model is then the same bit for bit on a rerun."""
        output:
            report=SCENES,
            model=[f"{ROOT}/{SFM_SCENE}/sparse/{f}.bin" for f in ("cameras", "images", "points3D")],
        params:
            images=SFM["images"],
            root=lambda w: ROOT,
            scene=SFM_SCENE,
            seed=PLAN.source_seed("sfm"),
            extra=[
                w
                for k, v in sorted(SFM.items())
                if k in ("camera_model", "max_image_size", "max_features", "min_registered")
                for w in (f"--{k.replace('_', '-')}", str(v))
            ],
        threads: SFM["threads"]
        log:
            f"{OUT}/logs/sfm.log",
        conda:
            ENV
        shell:
            "nre sfm {params.images:q} {params.root:q} --scene {params.scene:q} --seed {params.seed:q}"
            " --threads {threads} {params.extra:q} --overwrite --report {output.report:q} > {log:q} 2>&1"


if CALIB:

    rule calibrated_scene:
        """One scene of data.calibrated triangulated at its known cameras (nre scene: SIFT, exhaustive matching,
        triangulation at the fixed poses, no SfM) into ROOT/<scene>, MegaDepth layout; fails when the model does
        not fit the cameras. Single-threaded by default: the model is then the same bit for bit on a rerun."""
        output:
            report=f"{ROOT}/{{scene}}/triangulation/report.json",
            model=[f"{ROOT}/{{scene}}/sparse/{f}.bin" for f in ("cameras", "images", "points3D")],
        wildcard_constraints:
            scene="|".join(re.escape(s) for s in CALIB_SCENES),
        params:
            source=(
                ["strecha", CALIB["root"]]
                if CALIB["format"] == "strecha"
                else ["colmap", CALIB["images"], CALIB["model"]]
            ),
            root=lambda w: ROOT,
            select=lambda w: ["--scenes" if CALIB["format"] == "strecha" else "--scene", w.scene],
            seed=PLAN.source_seed("calibrated"),
            extra=[
                w
                for k, flag in (
                    ("max_image_size", "--max-image-size"),
                    ("max_features", "--max-features"),
                    ("min_points", "--min-points"),
                    ("max_median_error_px", "--max-median-error"),
                    ("max_p90_error_px", "--max-p90-error"),
                )
                if k in CALIB
                for w in (flag, str(CALIB[k]))
            ],
        threads: CALIB["threads"]
        log:
            f"{OUT}/logs/scene_{{scene}}.log",
        conda:
            ENV
        shell:
            "nre scene {params.source:q} {params.root:q} {params.select:q} --seed {params.seed:q}"
            " --threads {threads} {params.extra:q} --overwrite > {log:q} 2>&1"


rule pairs:
    input:
        SCENES,
    output:
        table=f"{OUT}/pairs.csv",
        summary=f"{OUT}/pairs.summary.json",
        hist=report(f"{OUT}/pairs.hist.png", caption="../report/pairs.rst", category="Data"),
    params:
        root=lambda w: ROOT,
        scenes=_scene_args(),
        ntest=config["pairs"]["n_test"],
        ntuning=config["pairs"]["n_tuning"],
        mincov=config["pairs"]["min_covisible"],
        distance=config["pairs"]["distance"],
        seed=SEED,
    log:
        f"{OUT}/logs/pairs.log",
    conda:
        ENV
    shell:
        "nre pairs --root {params.root:q} {params.scenes:q} --n-pairs {params.ntest:q} --n-tuning {params.ntuning:q}"
        " --min-covisible {params.mincov:q} --distance {params.distance:q} --seed {params.seed:q}"
        " --out {output.table:q} > {log:q} 2>&1"


rule train:
    """Feature learning (Eq. 10) of the compact NRE networks on the training scenes of ROOT: its own target
    (`snakemake train`), never part of `all`. On the embedded default the training scenes are generated for it
    in ROOT/train (rule train_scenes). Resumes from OUT/train/<level>/last.pth after an interruption.
    The weights land in OUT/train/weights/; copy them to nre/weights/ on purpose to ship them."""
    input:
        TRAIN_SCENES or train_input,
    output:
        coarse=f"{OUT}/train/weights/compact_coarse.pth",
        fine=f"{OUT}/train/weights/compact_fine.pth",
    params:
        cfg=config["train"]["config"],
        outdir=lambda w, output: os.path.dirname(os.path.dirname(output.coarse)),
        weights=lambda w, output: os.path.dirname(output.coarse),
        root=lambda w: os.path.dirname(TRAIN_SCENES) if TRAIN_SCENES else ROOT,
    threads: 2  # nre train runs on the CPU (no device option): no GPU requested
    log:
        f"{OUT}/logs/train.log",
    conda:
        ENV
    shell:
        "nre train --config {params.cfg:q} --root {params.root:q} --out {params.outdir:q} --threads {threads} --resume"
        " --export-weights {params.weights:q} > {log:q} 2>&1"
