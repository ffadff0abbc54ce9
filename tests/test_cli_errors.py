"""Every user error of every command is one line on stderr, ``nre <command>: <message naming the file or option>``,
and exit status 2 (``-v`` shows the traceback): a missing file, a folder where a file is expected, a file of another
format, an unknown estimator / backend / option, invalid JSON. Run in-process through ``nre.cli.main``."""

import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import DATA, SAMPLE

from nre.cli import error_message, main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Inputs, good and bad: {name: path}."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    f = {"tmp": tmp, "missing": tmp / "missing", "dir": tmp / "dir", "empty": tmp / "empty"}
    f["dir"].mkdir()
    f["empty"].mkdir()
    f["jpg"] = tmp / "photo.jpg"
    shutil.copy(DATA / "megadepth_tiny" / "0016" / "images" / "0000.jpg", f["jpg"])
    f["pairs"] = tmp / "pairs.csv"
    pd.DataFrame({"pair_id": ["p"], "scene": ["s"], "source": ["a"], "target": ["b"], "split": ["test"],
                  "category": ["easy"]}).to_csv(f["pairs"], index=False)  # fmt: skip
    f["nocol"] = tmp / "nocol.csv"
    f["nocol"].write_text("a,b\n1,2\n")
    f["rows_csv"] = tmp / "rows.csv"
    f["rows_csv"].write_text("pair_id\np\n")
    f["yaml_list"] = tmp / "list.yaml"
    f["yaml_list"].write_text("- a\n- b\n")
    f["bad_yaml"] = tmp / "bad.yaml"
    f["bad_yaml"].write_text("estimators: [unclosed\n")
    f["npz_keys"] = tmp / "keys.npz"
    np.savez(f["npz_keys"], p3D=np.zeros((3, 3)))
    f["sample"], f["tiny"] = SAMPLE, DATA / "megadepth_tiny"
    f["file"] = tmp / "a_file"
    f["file"].write_text("x")
    return f


OFFICIAL = '{"coarse_weights": "weights/none.pth", "fine_weights": "weights/none.pth"}'
EST = ["estimate", "--root", "@tmp", "--maps-dir", "@dir", "--out", "@tmp/r.parquet", "--estimator"]
MAPS = ["maps", "--root", "@tmp", "--out-dir", "@tmp/m", "--pairs"]
LOC = ["localize", "@sample"]
TIM = ["timing", "--root", "@tmp", "--out", "@tmp/t.csv"]
EVAL = ["evaluate", "--out-dir", "@tmp/e"]
REGR = ["regress", "--reference", "@dir", "--current", "@dir", "--config"]
TRAIN = ["train", "--out", "@tmp/t", "--config"]

# (case id, arguments: "@name" is the fixture file `name`, "@name/x" a path below it; words of the message)
CASES = [
    ("localize-missing", ["localize", "@missing"], "missing: no such pair file"),
    ("localize-dir", ["localize", "@dir"], "dir: is a directory, not a pair file"),
    ("localize-jpg", ["localize", "@jpg"], "photo.jpg: not a pair file (an npz with keys source_image, target_im"),
    ("localize-keys", ["localize", "@npz_keys"], "keys.npz: not a pair file: missing keys"),
    ("localize-estimator", [*LOC, "--estimator", "nre_c2ff"], "unknown estimator 'nre_c2ff'; available: "),
    ("localize-backend", [*LOC, "--features", "sfit"], "unknown feature backend 'sfit'"),
    ("localize-option", [*LOC, "--estimator", "fpr", "--options", 'fpr={"x": 1}'], "fpr has no option 'x'"),
    ("localize-grid", [*LOC, "--grid", 'nre_c2f={"k": [1]}'], "nre_c2f has no hyperparameter 'k'"),
    ("localize-json", [*LOC, "--estimator", "fpr", "--options", "fpr={x: 1}"], "--options fpr: not valid JSON"),
    ("localize-not-run", [*LOC, "--options", "fpr={}"], "--options fpr: not one of the estimators run"),
    ("localize-config", [*LOC, "--config", "@missing"], "missing: cannot read the config file (No such file"),
    ("localize-config-yaml", [*LOC, "--config", "@bad_yaml"], "bad.yaml: not valid YAML"),
    ("localize-config-list", [*LOC, "--config", "@yaml_list"], "list.yaml: a config file is a mapping of keys"),
    ("estimate-pairs-missing", [*EST, "oracle", "--pairs", "@missing"], "missing: No such file or directory"),
    ("estimate-pairs-dir", [*EST, "oracle", "--pairs", "@dir"], "dir: Is a directory"),
    ("estimate-pairs-jpg", [*EST, "oracle", "--pairs", "@jpg"], "photo.jpg: not a pair table (CSV)"),
    ("estimate-estimator", [*EST, "lo_ransac_poselb", "--pairs", "@pairs"], "unknown estimator 'lo_ransac_poselb'"),
    ("estimate-module", [*EST, "nowhere.mod:Cls", "--pairs", "@pairs"], "cannot import module 'nowhere.mod'"),
    ("estimate-grid", [*EST, "oracle", "--pairs", "@pairs", "--grid", '{"radius": ["x"]}'], "--grid radius[0]: 'x'"),
    ("estimate-options", [*EST, "oracle", "--pairs", "@pairs", "--options", '{"r": 1}'], "has no option 'r'"),
    ("estimate-json", [*EST, "oracle", "--pairs", "@pairs", "--grid", "{radius: [1]}"], "--grid: not valid JSON"),
    ("estimate-json-type", [*EST, "oracle", "--pairs", "@pairs", "--options", "[1]"], "must be a JSON object"),
    ("estimate-chunk", [*EST, "oracle", "--pairs", "@pairs", "--chunk", "2/2"], "--chunk: chunk must satisfy"),
    ("estimate-backend", [*EST, "fpr", "--pairs", "@pairs", "--features", "sfit"], "unknown feature backend 'sfit'"),
    ("maps-backend", [*MAPS, "@pairs", "--features", "sfit"], "unknown feature backend 'sfit'; available"),
    ("maps-weights", [*MAPS, "@pairs", "--features", "s2dnet"], "weights: no checkpoint given"),
    (
        "maps-checkpoint",
        [*MAPS, "@pairs", "--features", "nre_official", "--features-options", OFFICIAL],
        "coarse_weights: weights/none.pth: no such checkpoint file",
    ),
    ("maps-option", [*MAPS, "@pairs", "--features-options", '{"strid": 4}'], "strid"),
    ("maps-options-json", [*MAPS, "@pairs", "--features-options", "{"], "--features-options: not valid JSON"),
    ("maps-pairs-missing", [*MAPS, "@missing"], "missing: No such file or directory"),
    ("maps-pairs-dir", [*MAPS, "@dir"], "dir: Is a directory"),
    ("maps-pairs-jpg", [*MAPS, "@jpg"], "photo.jpg: not a pair table (CSV)"),
    ("maps-pairs-columns", [*MAPS, "@nocol"], "nocol.csv: not a pair table: no column pair_id"),
    ("maps-export", [*MAPS, "@pairs", "--no-matches", "--export-h5", "x.h5"], "cannot be combined with --no-matches"),
    ("timing-no-pairs", ["timing", "--out", "@tmp/t.csv"], "--pairs and --root are required"),
    ("timing-pairs-jpg", [*TIM, "--pairs", "@jpg"], "photo.jpg: not a pair table"),
    ("timing-estimator", [*TIM, "--pairs", "@pairs", "--estimators", '{"x": {"cls": "nope"}}'], "estimator 'nope'"),
    ("timing-merge", ["timing", "--merge", "@missing", "--out", "@tmp/t.csv"], "missing: No such file"),
    ("tables-missing", ["tables", "--eval-dir", "@empty"], "rows.parquet: missing (run nre evaluate"),
    ("tables-pictures", ["tables", "--no-tables", "--eval-dir", "@empty", "--map-pictures", "1"], "need the pair"),
    ("tables-thresholds", ["tables", "--eval-dir", "@empty", "--thresholds", "{"], "--thresholds: not valid JSON"),
    ("evaluate-rows-missing", [*EVAL, "--rows", "@missing"], "missing: no such result-rows file"),
    ("evaluate-rows-dir", [*EVAL, "--rows", "@dir"], "dir: is a directory, not a result-rows file"),
    ("evaluate-rows-csv", [*EVAL, "--rows", "@rows_csv"], "rows.csv: not a result-rows file (parquet)"),
    ("evaluate-no-rows", EVAL, "no result-row files given"),
    ("evaluate-select", ["evaluate", "--select", "--out-dir", "@empty"], "failure_rates.csv: No such file"),
    ("report-eval-dir", ["report", "--eval-dir", "@missing", "--pairs", "@pairs", "--out", "@tmp/r.html"], "folder"),
    ("report-pairs", ["report", "--eval-dir", "@empty", "--pairs", "@jpg", "--out", "@tmp/r.html"], "a pair table"),
    ("pairs-no-scene-list", ["pairs", "--root", "@empty", "--out", "@tmp/p.csv"], "scenes.yaml: no scene list"),
    (
        "pairs-overlap",
        [
            "pairs",
            "--root",
            "@tiny",
            "--scenes",
            "0016",
            "--n-tuning",
            "2",
            "--tuning-scenes",
            "0016",
            "--out",
            "@tmp/p",
        ],
        "tuning scenes overlap the test scenes",
    ),
    ("pairs-external", ["pairs", "--root", "@empty", "--external", "@missing", "--out", "@tmp/p"], "No such file"),
    ("pairs-external-jpg", ["pairs", "--root", "@empty", "--external", "@jpg", "--out", "@tmp/p"], "not a pair list"),
    ("pairs-external-cols", ["pairs", "--root", "@empty", "--external", "@nocol", "--out", "@tmp/p"], "missing col"),
    ("sfm-missing", ["sfm", "@missing", "@tmp/o"], "missing: image folder does not exist"),
    ("sfm-empty", ["sfm", "@empty", "@tmp/o"], "empty: no images"),
    ("synth-out-file", ["synth", "--out", "@file", "--preset", "tiny"], "a_file: File exists"),
    ("estimators-unknown", ["estimators", "magsac"], "unknown estimator 'magsac'; available"),
    ("train-config", [*TRAIN, "@missing"], "missing: no such training config"),
    ("train-config-list", [*TRAIN, "@yaml_list"], "list.yaml: a training config must be a mapping"),
    ("train-config-jpg", [*TRAIN, "@jpg"], "photo.jpg: not a YAML training config"),
    ("train-compare-json", [*TRAIN, "@missing", "--compare", "dsift={"], "--compare dsift: not valid JSON"),
    ("regress-args", ["regress", "--reference", "@dir"], "--reference, --current and --config are required"),
    ("regress-config", [*REGR, "@missing"], "missing: no such config file"),
    ("regress-update", [*REGR, "@file", "--update"], "--update needs --pairs"),
]


def _arg(word: str, files: dict) -> str:
    if not word.startswith("@"):
        return word
    name, _, below = word[1:].partition("/")
    return str(files[name] / below if below else files[name])


@pytest.mark.parametrize("argv,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_errors_are_one_line_and_exit_status_2(files, capsys, argv, words):
    args = [_arg(w, files) for w in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and " nre." not in ln]  # log lines of the job aside
    assert len(lines) == 1, err
    assert lines[0].startswith(f"nre {args[0]}: ") and words in lines[0], lines[0]


def test_verbose_shows_the_traceback(files):
    from nre.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown estimator 'magsac'"):
        main(["-v", "estimators", "magsac"])
    with pytest.raises(FileNotFoundError):
        main(["-v", "localize", str(files["missing"])])


def test_error_message_names_the_file():
    assert (
        error_message(FileNotFoundError(2, "No such file or directory", "/x/y.csv"))
        == "/x/y.csv: No such file or directory"
    )
    assert error_message(ValueError("a\n  b")) == "a b"


def test_bugs_keep_their_traceback(monkeypatch):
    """Anything that is not a user error propagates (a bug must not look like bad input)."""
    import nre.estimators.listing

    def boom(**kw):
        raise KeyError("a bug")

    monkeypatch.setattr(nre.estimators.listing, "list_estimators", boom)
    with pytest.raises(KeyError, match="a bug"):
        main(["estimators"])


def test_one_line_in_a_real_process(files):
    """As the workflow runs them (logging configured, its own process): stderr is the one error line."""
    import subprocess
    import sys

    for args, words in (
        (["maps", "--pairs", str(files["pairs"]), "--root", str(files["tmp"]), "--out-dir", str(files["tmp"] / "m"),
          "--features", "nre_official", "--features-options", OFFICIAL], "no such checkpoint file"),
        (["estimate", "--pairs", str(files["jpg"]), "--root", str(files["tmp"]), "--maps-dir", str(files["dir"]),
          "--estimator", "oracle", "--out", str(files["tmp"] / "r.parquet")], "not a pair table"),
    ):  # fmt: skip
        p = subprocess.run([sys.executable, "-m", "nre.cli", *args], capture_output=True, text=True)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and words in p.stderr, p.stderr
