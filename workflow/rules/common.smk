import os
import json

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
SCENES = f"{ROOT}/scenes.yaml" if config["data"].get("synth") else []
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


def _scene_args():
    d = config["data"]
    a = ["--scenes", *d["test_scenes"]] if d.get("test_scenes") else ["--split", "test"]
    if d.get("tuning_scenes") is not None:
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
