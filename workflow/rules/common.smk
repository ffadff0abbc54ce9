# Names every rule uses, all from the job plan (nre.workflow.plan.Plan) and the config with its defaults filled in.
import os
import re

from nre.workflow.config import calibrated_scenes, sfm_scene, test_scenes
from nre.workflow.plan import jdump, overrides_option

OUT = PLAN.out
ROOT = PLAN.root
SEED = PLAN.seed
CHUNKS = PLAN.chunks
NCHUNKS = PLAN.n_chunks
MAXPTS = PLAN.max_points
T1 = PLAN.table1_features
ENV = "../../environment.yml"
EVAL = PLAN.eval_dir
FIG4 = [f"{EVAL}/fig4_maps_{i}.png" for i in range(PLAN.map_pictures)]  # Fig. 4 map pictures
SFM = config["data"]["sfm"]  # {images, scene, ...}: the scene is reconstructed from photographs (rule sfm)
SFM_SCENE = sfm_scene(config)
# {format: strecha, root, ...} or {format: colmap, images, model, scene, ...}: photographs with known cameras,
# triangulated at the fixed poses into ROOT/<scene> (rule calibrated_scene); the scenes are listed at parse time
CALIB = config["data"]["calibrated"]
CALIB_SCENES = calibrated_scenes(config) if CALIB else []
if config["data"]["synth"]:
    SCENES = f"{ROOT}/scenes.yaml"
elif SFM:
    SCENES = f"{ROOT}/{SFM_SCENE}/sfm/report.json"
elif CALIB:
    SCENES = [f"{ROOT}/{s}/triangulation/report.json" for s in CALIB_SCENES]
else:
    SCENES = []
TRAIN_SCENES = f"{ROOT}/train/scenes.yaml" if config["data"]["synth"] else []
INFO = PLAN.info_json()  # what the evaluation knows about the study: names, units, order, stages, Table 2, seeds
# the Markdown tables of rule tables besides Table 1 (each also as .csv, .tex and .html)
TABLES = ["table1_fair", "table2", "summary", "headline", "seeds", "failure_reasons", "cost_summary", "truth_comparison"]
TABLES += [f"table1_{p}_{f}" for f in PLAN.table1[1:] for p in ("paper", "fair")]
TIMING = PLAN.timing_enabled
TIMED = PLAN.timed  # estimators timed for Table 3, at their default setting


def features_options(name):
    return PLAN.features_json(name)


def train_input(wildcards):
    """The real scenes `snakemake train` learns from; never photographs reconstructed by rule sfm or triangulated
    by rule calibrated_scene (test scenes)."""
    if SFM or CALIB:
        what = f"data.sfm scene {SFM_SCENE} is a test scene" if SFM else "data.calibrated scenes are test scenes"
        raise ValueError(
            f"config: {what}; train the features on other scenes (config/train.yaml's data root), never on them"
        )
    return SCENES


def _scene_args():
    d, p = config["data"], config["pairs"]
    a = ["--scenes", *test_scenes(config)] if test_scenes(config) else ["--split", "test"]
    if p["tuning_from"] == "same_scene":
        a += ["--tuning-from", "same-scene", "--tuning-fraction", str(p["tuning_fraction"])]
    elif d["tuning_scenes"] is not None:
        a += ["--tuning-scenes", *d["tuning_scenes"]]
    return a


def _all_cores():
    """Every core of the run (timing jobs take them all, so they run alone); 1 when --cores is not set (--report,
    cluster executors, where the profile's set-threads decides)."""
    try:
        return max(1, int(workflow.cores))
    except Exception:
        return 1


ALL_CORES = _all_cores()


wildcard_constraints:
    chunk=r"\d+",
    features=r"[A-Za-z0-9_\-]+",
    estimator=r"[A-Za-z0-9_\-]+(@[0-9]+)?",  # <key>@<k>: repeat k of a randomised estimator (seeds)
