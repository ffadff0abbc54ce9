"""Untrusted configuration: every problem is found when the Snakefile is parsed (dry runs included) and reported as
one line naming the config file and key; config strings reach the shell quoted (nothing they contain runs). The
commands' own one-line errors (bad backends, missing weights...) are in tests/test_cli_errors.py."""

import copy
import inspect
import json
import shlex

import pytest
import yaml
from helpers import REPO, TINY_MD, snakemake

from nre.workflow.config import ConfigError, check_config, with_defaults

QUICK = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())


def _snakemake(*args):
    return snakemake(*args, check=False)


def _with(edit):
    cfg = copy.deepcopy(QUICK)
    edit(cfg)
    return cfg


def _est(name, **entry):
    return lambda c: c["estimators"].__setitem__(name, entry)


# (edit of config/quick.yaml, key path, words of the problem)
CASES = {
    "grid value type": (
        _est("magsac_pp", grid={"threshold": ["four"]}),
        "estimators.magsac_pp.grid.threshold[0]",
        "'four' is not a number",
    ),
    "grid choice": (_est("fpr", grid={"loss": ["cauchyy"]}), "estimators.fpr.grid.loss[0]", "not one of"),
    "grid name": (_est("oracle", grid={"radus": [4]}), "estimators.oracle.grid.radus", "no hyperparameter"),
    "misspelt option": (
        _est("nre_c2f", options={"msac_iteration": 100}),
        "estimators.nre_c2f.options.msac_iteration",
        "has no option 'msac_iteration'",
    ),
    "option type": (
        _est("nre_c2f", options={"msac_iterations": "100"}),
        "estimators.nre_c2f.options.msac_iterations",
        "is not an integer",
    ),
    "unknown class": (_est("mine", **{"class": "lo_ransac_posilib"}), "estimators.mine.class", "unknown estimator"),
    "timing estimator": (
        lambda c: c["timing"].__setitem__("estimators", ["nre_c2f", "nre_cf2"]),
        "timing.estimators[1]",
        "'nre_cf2' is not one of estimators",
    ),
    "table1 backend": (
        lambda c: c.__setitem__("table1_features", "s2dnet"),
        "table1_features",
        "'s2dnet' is not one of features",
    ),
    "unknown backend": (
        lambda c: c["features"].__setitem__("sift", {"options": {}}),
        "features.sift",
        "unknown feature backend 'sift'",
    ),
    "backend option": (
        lambda c: c["features"].__setitem__("dsift", {"options": {"temprature": 0.02}}),
        "features.dsift.options.temprature",
        "unknown option",
    ),
    "missing weights": (
        lambda c: c["features"].__setitem__(
            "nre_official", {"options": {"coarse_weights": "weights/none.pth", "fine_weights": "weights/none.pth"}}
        ),
        "features.nre_official.options.coarse_weights",
        "weights/none.pth: no such checkpoint file",
    ),
    "no weights": (
        lambda c: c["features"].__setitem__("s2dnet", {"options": {}}),
        "features.s2dnet.options.weights",
        "no checkpoint given",
    ),
    "metric": (lambda c: c["selection"].__setitem__("metric", "R>7deg"), "selection.metric", "not a rate column"),
    "scene name": (
        lambda c: c["data"].__setitem__("test_scenes", ["$(touch PWNED)"]),
        "data.test_scenes[0]",
        "is not valid",
    ),
    "scene name ;": (
        lambda c: c["data"].__setitem__("tuning_scenes", ["a; touch PWNED"]),
        "data.tuning_scenes[0]",
        "is not valid",
    ),
    "estimator key": (_est("x$(touch PWNED)"), "estimators", "key 'x$(touch PWNED)' is not a valid name"),
    "name": (lambda c: c.__setitem__("name", "../quick"), "name", "is not valid"),
    "nested unknown key": (_est("oracle", grdi={}), "estimators.oracle.grdi", "unknown key; allowed here: class"),
    "wrong type": (lambda c: c.__setitem__("chunks", "two"), "chunks", "'two' is not of type integer"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_problems_are_one_line_naming_file_and_key(case):
    edit, key, words = CASES[case]
    with pytest.raises(ConfigError) as e:
        check_config(_with(edit), "config/quick.yaml")
    msg = str(e.value)
    assert msg.startswith(f"config/quick.yaml: {key}: ") and words in msg and "\n" not in msg and len(msg) < 400, msg


def test_the_committed_configs_pass():
    for name in ("config.yaml", "quick.yaml", "features.yaml", "default_xfeat.yaml"):
        check_config(yaml.safe_load((REPO / "config" / name).read_text()), name)
    md = yaml.safe_load((REPO / "config" / "megadepth.yaml").read_text())
    check_config(md, "megadepth.yaml", check_files=False)  # its official checkpoints are not in the repository
    st = yaml.safe_load((REPO / "config" / "strecha.yaml").read_text())
    check_config(st, "strecha.yaml", check_files=False)  # its photographs are outside the repository


def test_code_defaults_are_the_measured_settings_and_paper_is_a_preset():
    """The code defaults are the settings measured best (docs/results-log.md): dense SIFT and the compact networks
    at coarse stride 8, coarse-to-fine NRE without the coarse sigma 2, Eq. 11 ranked and minimised at sigma. The
    paper's literal settings are the preset ``paper``, which config/megadepth.yaml runs; the other shipped configs
    repeat no default. Changing a default makes every reference that runs it stale (its study hash)."""
    from nre.estimators import registry
    from nre.features.catalog import default_options, resolve_options
    from nre.workflow.plan import Plan

    assert registry.get("re_gauss")().options.items() >= {"init": "gaussian", "schedule": "single"}.items()
    assert registry.get("re_gauss")(preset="paper").options.items() >= {"init": "one_hot", "schedule": "scaled"}.items()
    assert tuple(registry.get("nre_c2f")().options["coarse_sigmas"]) == (1, 0.9, 0.8, 0.7, 0.6)
    assert tuple(registry.get("nre_c2f")(preset="paper").options["coarse_sigmas"]) == (2, 1, 0.9, 0.8, 0.7, 0.6)
    assert default_options("dsift")["coarse_stride"] == 8 and resolve_options("dsift", {}, "paper") == {
        "coarse_stride": 16
    }
    assert default_options("nre_compact")["coarse_stride"] == 8
    for name in (
        "config.yaml",
        "quick.yaml",
        "features.yaml",
        "default_xfeat.yaml",
        "sacre_coeur.yaml",
        "strecha.yaml",
    ):
        cfg = yaml.safe_load((REPO / "config" / name).read_text())
        for entry in list(cfg["features"].values()) + list(cfg["estimators"].values()):
            assert "preset" not in (entry or {}), name
            opts = (entry or {}).get("options", {})
            assert not {"coarse_stride", "coarse_sigmas", "init", "schedule"} & set(opts), (name, opts)
    md = Plan(with_defaults(yaml.safe_load((REPO / "config" / "megadepth.yaml").read_text())))
    assert md.estimators["nre_c2f"].options == {"coarse_sigmas": [2, 1, 0.9, 0.8, 0.7, 0.6]}
    assert md.features["dsift"] == {"coarse_stride": 16} and md.estimators["re_gauss"].options == {}


def test_catalog_matches_the_backend_classes():
    """nre.features.catalog lists each backend's options without importing torch; it must be the classes' own."""
    from nre.features import base
    from nre.features.base import get_backend
    from nre.features.catalog import BACKENDS

    get_backend("dsift")
    for name in BACKENDS:
        __import__(BACKENDS[name].module)
    assert set(BACKENDS) == set(base._BACKENDS)
    for name, cls in base._BACKENDS.items():
        params = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is not None:
                sig = inspect.signature(init).parameters.values()
                params |= {p.name for p in sig if p.kind == p.POSITIONAL_OR_KEYWORD and p.name != "self"}
                if not any(p.kind == p.VAR_KEYWORD for p in sig):
                    break
        assert params == set(BACKENDS[name].options), name


@pytest.mark.parametrize("case", ["grid value type", "misspelt option", "timing estimator", "scene name", "no weights"])
def test_dry_run_refuses_bad_configs_with_one_line(case, tmp_path):
    """The same problems stop `snakemake -n` with one line and a non-zero status (they used to pass the dry run
    and fail after the maps, or fail every pair with exit 0; a schema error printed 237 lines)."""
    edit, key, words = CASES[case]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(_with(edit)))
    p = _snakemake("-n", "--configfile", str(cfg), "--config", f"out={tmp_path / 'out'}")
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    assert p.returncode != 0 and len(lines) == 1, lines[:20]
    assert lines[0].startswith(f"config error: {cfg}") and f": {key}: " in lines[0] and words in lines[0]
    assert not (REPO / "PWNED").exists() and not (tmp_path / "PWNED").exists()


def test_config_strings_reach_the_shell_quoted(tmp_path):
    """A feature option holding `'$(touch X)'` and an output folder named `$(touch X)` are passed as they are:
    the commands Snakemake runs split back into the original words, and a real run creates no X."""
    marker = tmp_path / "PWNED"
    payload = {"impl": f"torch'$(touch {marker})'; touch {marker}"}
    cfg = _with(lambda c: c["features"]["dsift"].__setitem__("options", payload))
    cfg["data"] = {"root": str(TINY_MD), "synth": None, "test_scenes": ["0016"], "tuning_scenes": ["0033"]}
    out = tmp_path / f"run $(touch {marker})"
    cfg["out"] = str(out)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = _snakemake("-n", "-p", "--configfile", str(path))
    assert p.returncode == 0, p.stderr[-2000:]
    cmds = [ln.split("Shell command: ", 1)[1] for ln in p.stdout.splitlines() if "Shell command: nre " in ln]
    maps = next(shlex.split(c) for c in cmds if c.startswith("nre maps"))
    assert json.loads(maps[maps.index("--features-options") + 1]) == cfg["features"]["dsift"]["options"]
    assert maps[maps.index("--out-dir") + 1] == f"{out}/maps/dsift" and ";" not in maps
    pairs = next(shlex.split(c) for c in cmds if c.startswith("nre pairs"))
    assert pairs[pairs.index("--out") + 1] == f"{out}/pairs.csv"
    # a real run of the pairs and maps jobs: the pairs table is made, the maps job fails on the (bogus) impl
    # option it received intact, and nothing ran the payloads
    p = _snakemake(f"{out}/maps/dsift/manifest0.csv", "--cores", "1", "--configfile", str(path))
    assert (out / "pairs.csv").exists() and not marker.exists()
    log = (out / "logs" / "maps" / "dsift_0.log").read_text()
    assert "impl must be one of" in log and "touch" in log


def _real(root, **data):
    """config/quick.yaml on real data in ``root`` (synth: null)."""
    return _with(lambda c: c.__setitem__("data", {"root": str(root), "synth": None, **data}))


REAL_DATA_CASES = {
    # (data keys, key path, words); ROOT is a placeholder for the case's root
    "missing root": (dict(root="ROOT/nowhere"), "data.root", "ROOT/nowhere: no such data folder"),
    "no test scenes, no split list": (
        dict(root="ROOT/empty"),
        "data.test_scenes",
        "not set and ROOT/empty/scenes.yaml (a split list) does not exist: name the test scenes; no scene found",
    ),
    "test scenes not in the root": (
        dict(root=str(TINY_MD), test_scenes=["0099"], tuning_scenes=["0033"]),
        "data.test_scenes",
        f"none of ['0099'] is a scene of {TINY_MD}; scenes found in {TINY_MD}: 0016, 0033",
    ),
    "tuning scenes not in the root": (
        dict(root=str(TINY_MD), test_scenes=["0016"], tuning_scenes=["0000", "0001"]),
        "data.tuning_scenes",
        "none of ['0000', '0001'] is a scene of",
    ),
}


@pytest.mark.parametrize("case", sorted(REAL_DATA_CASES))
def test_real_data_root_and_scenes_are_checked_at_parse_time(case, tmp_path):
    """Real data (synth: null): the root, and the scenes the pairs come from, are there before any job runs; one
    problem, about the data that is missing (not a second one about tuning scenes, which followed from it)."""
    (tmp_path / "empty").mkdir()
    data, key, words = REAL_DATA_CASES[case]
    data = {k: v.replace("ROOT", str(tmp_path)) if isinstance(v, str) else v for k, v in data.items()}
    with pytest.raises(ConfigError) as e:
        check_config(_real(**data), "my.yaml")
    msg = str(e.value)
    assert msg.startswith(f"my.yaml: {key}: ") and words.replace("ROOT", str(tmp_path)) in msg, msg
    assert "more problems" not in msg and "\n" not in msg
    check_config(_real(TINY_MD, test_scenes=["0016", "0099"], tuning_scenes=["0033"]), "my.yaml")  # one is enough
    check_config(_real(TINY_MD, test_scenes=["0016"], tuning_scenes=["0099"]), "my.yaml", check_files=False)


@pytest.mark.parametrize("root", ["nowhere", "empty"])
def test_dry_run_refuses_a_missing_data_root_in_one_line(root, tmp_path):
    """`synth: null` with a data root that is not there (or holds no scene): `snakemake -n` stops in one line naming
    the path, before any job."""
    (tmp_path / "empty").mkdir()
    cfg = tmp_path / "real.yaml"
    cfg.write_text(yaml.safe_dump({**_real(tmp_path / root), "out": str(tmp_path / "out")}))
    p = _snakemake("-n", "--configfile", str(cfg))
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    assert p.returncode != 0 and len(lines) == 1, lines[:20]
    assert lines[0].startswith(f"config error: {cfg}: data.") and str(tmp_path / root) in lines[0], lines[0]
    assert "tuning" not in lines[0] and not (tmp_path / "out").exists()


def test_the_xfeat_default_is_the_default_study_on_other_maps():
    """config/default_xfeat.yaml claims the default's scenes, pairs, sweeps and evaluation with XFeat maps instead of
    dense SIFT: editing one config and not the other breaks the comparison of results/default and
    results/default_xfeat, and fails here."""
    load = lambda name: with_defaults(yaml.safe_load((REPO / "config" / name).read_text()))  # noqa: E731
    default, xfeat = load("config.yaml"), load("default_xfeat.yaml")
    assert set(xfeat["features"]) == {"xfeat"} and xfeat["table1_features"] in ("xfeat", ["xfeat"])
    assert "dsift" in default["features"] and default["table1_features"] in ("dsift", ["dsift"])
    differs = {"name", "out", "features", "table1_features", "timing"}
    for key in sorted((set(default) | set(xfeat)) - differs):
        assert default.get(key) == xfeat.get(key), key


def test_the_regress_rule_passes_the_runs_config_overrides(tmp_path):
    """`--config key=value` joins the study the regression check compares (nre regress --overrides), so a rerun
    with another setting is called stale instead of being compared with the reference's numbers."""
    out = tmp_path / "out"
    p = _snakemake("-n", "-p", "--configfile", "config/quick.yaml", "--config", "regress=True", f"out={out}")
    cmds = [ln.split("Shell command: ", 1)[1] for ln in p.stdout.splitlines() if "Shell command: nre regress" in ln]
    assert p.returncode == 0 and len(cmds) == 1, p.stderr[-2000:]
    args = shlex.split(cmds[0])
    assert json.loads(args[args.index("--overrides") + 1]) == {"regress": True, "out": str(out)}


def test_a_lowercase_boolean_on_the_command_line_says_how_to_write_it():
    """Snakemake's --config reads True/False as booleans and `true` as text: the error says so."""
    from nre.workflow.config import ConfigError, check_config

    with pytest.raises(ConfigError, match=r"--config regress=...\): regress: 'true' is not of type boolean \(on Snake"):
        check_config(_with(lambda c: c.__setitem__("regress", "true")), "config/quick.yaml", {"regress": "true"})
    with pytest.raises(ConfigError, match=r"boolean$"):  # the same value in a file: YAML's true is a boolean there
        check_config(_with(lambda c: c.__setitem__("regress", "yes please")), "config/quick.yaml")
