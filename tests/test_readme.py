"""The README's plug-in example, run verbatim: the estimator file it shows is found by the registry, passes the
config checks, solves a synthetic problem with a known pose, and its config file layered on the default adds only
its jobs."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _block(marker: str, lang: str) -> str:
    """The fenced code block that follows ``<!-- README example: <marker>`` in the README."""
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- README example: {re.escape(marker)}[^\n]*-->\s*```{lang}\n(.*?)```", text, re.S)
    assert m, f"README.md has no example block for {marker}"
    return m.group(1)


def test_the_plug_in_example_is_short_and_imports_only_nre():
    code = _block("baselines/epnp_ransac.py", "python")
    assert len(code.strip().splitlines()) <= 25
    imports = re.findall(r"^(?:from|import) ([\w.]+)", code, re.M)
    assert [m for m in imports if m.split(".")[0] not in ("nre", "cv2")] == []
    assert [m for m in imports if m.startswith("nre.")] == []  # the public API only: from nre import ...


@pytest.fixture
def example(tmp_path, monkeypatch):
    """The README's estimator as a module of the baselines package (its folder searched as part of it)."""
    import baselines

    d = tmp_path / "more_baselines"
    d.mkdir()
    (d / "epnp_ransac.py").write_text(_block("baselines/epnp_ransac.py", "python"))
    monkeypatch.setattr(baselines, "__path__", [*baselines.__path__, str(d)])
    yield d
    sys.modules.pop("baselines.epnp_ransac", None)


def test_the_plug_in_example_runs(example):
    from nre.estimators import registry
    from nre.estimators.testing import matches_problem
    from nre.geometry import pose_error

    cls = registry.get("epnp_ransac")
    assert cls.display_name() == "EPnP + RANSAC (OpenCV)" and cls.units == {"threshold": "px"}
    prob, _ = matches_problem(3, n=500, outliers=0.5)
    est = cls()
    out = est.run(prob)
    assert len(out) == len(est.settings()) == 4
    for [r] in out:
        assert r.success and pose_error(r.pose, prob.gt_pose).rotation_deg < 0.5 and r.runtime_s > 0
    prob.matches.xy[:] = np.nan  # no usable match: a recorded failure, never an exception
    [[r]] = est.run(prob, [{"threshold": 4}])
    assert not r.success and r.failure_reason


def test_its_config_file_layers_on_the_default(example, tmp_path):
    from nre.workflow.config import check_config, load_config, with_defaults
    from nre.workflow.plan import Plan

    (tmp_path / "my.yaml").write_text(_block("my.yaml", "yaml"))
    base = Plan(with_defaults(load_config(REPO / "config" / "config.yaml")))
    cfg = load_config([REPO / "config" / "config.yaml", tmp_path / "my.yaml"])
    check_config(cfg, "config/config.yaml + my.yaml", check_files=False)
    plan = Plan(with_defaults(cfg))
    assert set(plan.estimators) == set(base.estimators) | {"epnp_ransac"}
    new = set(plan.rows_files()) - set(base.rows_files())
    assert new and all("/epnp_ransac/" in f for f in new)
    assert plan.out == base.out  # the default's run folder: its pairs, maps and rows are reused


def test_the_headline_table_is_the_committed_references():
    """The README's headline table is what scripts/readme_headline.py makes from the committed references it names:
    a reference updated without the README (or a hand-edited cell) fails here."""
    import subprocess

    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- headline: python (scripts/readme_headline\.py [^\n]*?) -->\n(.*?)\n\n", text, re.S)
    assert m, "README.md has no headline table after a <!-- headline: ... --> comment"
    args = m.group(1).split()
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert m.group(2).strip() == out.strip()


def test_the_headline_refuses_a_backend_the_reference_has_no_table1_on():
    """results/default has Table 1 on dense SIFT only: asking for its XFeat column is an error, never dense SIFT's
    table under the XFeat name."""
    import subprocess

    p = subprocess.run(
        [sys.executable, "scripts/readme_headline.py", "results/default:xfeat"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stderr.strip() == "readme_headline: results/default: no Table 1 on backend 'xfeat'"
