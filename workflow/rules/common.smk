import os
import json
import re

OUT = config["out"]
ROOT = config["data"]["root"]
SEED = config["seed"]
CHUNKS = list(range(config["chunks"]))
NCHUNKS = config["chunks"]
MAXPTS = config["max_points"]
T1 = config["table1_features"]
FIGS = config.get("figures", {})
ENV = "../../environment.yml"
EVAL = f"{OUT}/eval"
FIG4 = [f"{EVAL}/fig4_maps_{i}.png" for i in range(FIGS.get("map_pictures", 3))]  # Fig. 4 map pictures
SFM = config["data"].get("sfm")  # {images, scene, ...}: the scene is reconstructed from photographs (rule sfm)
if config["data"].get("synth") and SFM:
    raise ValueError("config: data.synth and data.sfm are exclusive (generated scenes or reconstructed photographs)")
SFM_SCENE = (SFM.get("scene") or os.path.basename(os.path.normpath(SFM["images"]))) if SFM else None
if SFM and not __import__("re").fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", SFM_SCENE):
    raise ValueError(
        f"config: data.sfm: scene name {SFM_SCENE!r} (from the images folder) may only use letters, digits, _ . + -; "
        "set data.sfm.scene"
    )
# {format: strecha, root, ...} or {format: colmap, images, model, scene, ...}: photographs with known cameras,
# triangulated at the fixed poses into ROOT/<scene> (rule calibrated_scene); the scenes are listed at parse time
CALIB = config["data"].get("calibrated")
if CALIB and CALIB["format"] == "strecha":
    from nre.data.calibrated import list_strecha_scenes

    CALIB_SCENES = list_strecha_scenes(CALIB["root"], CALIB.get("scenes"))
else:
    CALIB_SCENES = [CALIB["scene"]] if CALIB else []
if config["data"].get("synth"):
    SCENES = f"{ROOT}/scenes.yaml"
elif SFM:
    SCENES = f"{ROOT}/{SFM_SCENE}/sfm/report.json"
elif CALIB:
    SCENES = [f"{ROOT}/{s}/triangulation/report.json" for s in CALIB_SCENES]
else:
    SCENES = []
TRAIN_SCENES = f"{ROOT}/train/scenes.yaml" if config["data"].get("synth") else []


def jdump(d):
    return json.dumps(d or {}, sort_keys=True)


def features_options(name):
    return jdump(config["features"][name].get("options", {}))


def estimator_jobs():
    """(features, estimator) pairs: every estimator on the Table 1 backend, nre_c2f on every backend (Table 2)."""
    jobs = [(T1, e) for e in config["estimators"]]
    c2f = [e for e in config["estimators"] if estimator_spec(e)["cls"] == "nre_c2f"]
    jobs += [(f, e) for e in c2f for f in config["features"] if f != T1]
    return jobs


def estimator_spec(name):
    """Registered class (default: the key), grid and options of a config entry; the key labels its rows."""
    spec = config["estimators"][name] or {}
    return {"cls": spec.get("class", name), "grid": spec.get("grid"), "options": spec.get("options", {})}


# Shell commands: every value from the config reaches the shell as one quoted word (`{params.x:q}`, shlex.quote;
# a list is quoted word by word), so no scene name, option string or path can run anything. Optional flags are
# lists of words ([] when absent).
def grid_arg(name):
    grid = estimator_spec(name)["grid"]
    return ["--grid", jdump(grid)] if grid else []


def test_scenes():
    """data.test_scenes, else the scene of data.sfm, else data.calibrated's scenes that are not tuning scenes."""
    d = config["data"]
    if d.get("test_scenes"):
        return d["test_scenes"]
    if SFM:
        return [SFM_SCENE]
    if CALIB:
        return [s for s in CALIB_SCENES if s not in (d.get("tuning_scenes") or [])]
    return None


from nre.data.tuning import check_tuning_source

check_tuning_source(config, test_scenes(), os.path.exists(f"{ROOT}/scenes.yaml"))


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
    a = ["--scenes", *test_scenes()] if test_scenes() else ["--split", "test"]
    if p.get("tuning_from", "scenes") == "same_scene":
        a += ["--tuning-from", "same-scene", "--tuning-fraction", str(p.get("tuning_fraction", 0.3))]
    elif d.get("tuning_scenes") is not None:
        a += ["--tuning-scenes", *d["tuning_scenes"]]
    return a


def all_rows():
    return [f"{OUT}/rows/{f}/{e}/chunk{c}.parquet" for f, e in estimator_jobs() for c in CHUNKS]



def _all_cores():
    """Every core of the run (timing jobs take them all, so they run alone); 1 when --cores is not set (--report,
    cluster executors, where the profile's set-threads decides)."""
    try:
        return max(1, int(workflow.cores))
    except Exception:
        return 1


ALL_CORES = _all_cores()
TIMING = config.get("timing", {}).get("enabled", True)
# estimators timed for Table 3 (config timing.estimators; default: every estimator), at their first setting
TIMED = [e for e in (config.get("timing", {}).get("estimators") or config["estimators"]) if e in config["estimators"]]


wildcard_constraints:
    chunk=r"\d+",
    features=r"[A-Za-z0-9_\-]+",
    estimator=r"[A-Za-z0-9_\-]+",
