"""The estimator interface and registry: discovery by name, duplicates, unknown names, the never-raise contract."""

import json
import math
import sys

import numpy as np
import pytest

import baselines
from nre.estimators import registry
from nre.estimators.base import Estimator
from nre.estimators.problem import Result
from nre.estimators.testing import matches_problem as synthetic_problem
from nre.geometry import Pose

PAPER = {
    "nre_c2f",
    "nre_single",
    "re_gauss",
    "lo_ransac_poselib",
    "lo_ransac_pycolmap",
    "lo_ransac_opencv",
    "gc_ransac",
    "magsac_pp",
    "fpr",
    "oracle",
    "imported",
}

TOY = """
from nre.estimators.base import Estimator
from nre.estimators.problem import Result


class {cls}(Estimator):
    name = "{name}"
    grid = {{"k": [1, 2, 3]}}
    defaults = {{"offset": 0.0}}

    def estimate_many(self, problem, settings):
        if problem.pair_id == "boom":
            raise RuntimeError("exploded")
        return [[Result(problem.gt_pose, runtime_s=0.0, inliers=s["k"])] for s in settings]
"""


@pytest.fixture
def extra_baselines(tmp_path, monkeypatch):
    """A directory searched as part of the baselines package, as if its files were under baselines/."""
    d = tmp_path / "more_baselines"
    d.mkdir()
    monkeypatch.setattr(baselines, "__path__", [*baselines.__path__, str(d)])
    yield d
    for m in [m for m in sys.modules if m.startswith("baselines.toy_")]:
        sys.modules.pop(m)


def test_every_paper_estimator_is_registered():
    found = registry.available()
    assert PAPER <= set(found)
    for name, cls in found.items():
        assert cls.name == name and issubclass(cls, Estimator)
        assert all(isinstance(v, list) and v for v in cls.grid.values()), name
    assert registry.import_errors() == {}


def test_a_new_module_under_baselines_is_found_by_name(extra_baselines):
    (extra_baselines / "toy_new.py").write_text(TOY.format(cls="Toy", name="toy_new"))
    cls = registry.get("toy_new")
    assert cls.__module__ == "baselines.toy_new" and "toy_new" in registry.available()
    prob, _ = synthetic_problem(0, n=10)
    out = cls(offset=1.0).run(prob)
    assert [r[0].inliers for r in out] == [1, 2, 3] and all(r[0].success for r in out)


def test_duplicate_names_are_an_error(extra_baselines):
    (extra_baselines / "toy_a.py").write_text(TOY.format(cls="A", name="toy_dup"))
    (extra_baselines / "toy_b.py").write_text(TOY.format(cls="B", name="toy_dup"))
    with pytest.raises(RuntimeError, match=r"'toy_dup' is defined twice: baselines.toy_a.A and baselines.toy_b.B"):
        registry.available()
    (extra_baselines / "toy_c.py").write_text(TOY.format(cls="C", name="lo_ransac_poselib"))
    (extra_baselines / "toy_b.py").unlink()
    with pytest.raises(RuntimeError, match="lo_ransac_poselib"):
        registry.get("oracle")


def test_unknown_name_lists_what_exists_and_broken_modules(extra_baselines):
    with pytest.raises(KeyError, match="available: .*lo_ransac_poselib.*oracle"):
        registry.get("no_such_estimator")
    (extra_baselines / "toy_broken.py").write_text("import no_such_module_xyz\n")
    assert registry.get("oracle").name == "oracle"  # a broken module hides nothing else
    assert "baselines.toy_broken" in registry.import_errors()
    with pytest.raises(KeyError, match="toy_broken.*no_such_module_xyz"):
        registry.get("toy_missing")


def test_module_class_spec_outside_baselines(tmp_path, monkeypatch):
    pkg = tmp_path / "toypkg_reg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(TOY.format(cls="Toy", name="toy_ext") + "\nNOT_A_CLASS = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cls = registry.get("toypkg_reg.mod:Toy")
        prob, _ = synthetic_problem(0, n=10)
        assert cls().run(prob, [{"k": 7}])[0][0].inliers == 7
        with pytest.raises(KeyError, match="has no attribute"):
            registry.get("toypkg_reg.mod:Nope")
        with pytest.raises(TypeError, match="not an Estimator"):
            registry.get("toypkg_reg.mod:NOT_A_CLASS")
        with pytest.raises(KeyError, match="cannot import"):
            registry.get("toypkg_nope.mod:Toy")
    finally:
        for m in ("toypkg_reg", "toypkg_reg.mod"):
            sys.modules.pop(m, None)


class _E(Estimator):
    name = ""  # not registered (empty name)
    grid = {"b": [1, 2], "a": ["x", "y", "z"]}
    defaults = {"opt": 1}

    def __init__(self, behaviour="ok", **kw):
        super().__init__(**kw)
        self.behaviour = behaviour

    def estimate_many(self, problem, settings):
        if self.behaviour == "raise":
            raise ValueError("bad input in toy.npz")
        if self.behaviour == "short":
            return [[Result(problem.gt_pose, runtime_s=0.0)]]
        if self.behaviour == "flat":  # one Result per setting instead of a list: allowed
            return [Result(problem.gt_pose, runtime_s=0.0) for _ in settings]
        if self.behaviour == "not a result":
            return [["pose"] for _ in settings]
        if self.behaviour == "nan":
            return [[Result(Pose(np.eye(3), np.array([np.nan, 0, 0])), runtime_s=0.0)] for _ in settings]
        if self.behaviour == "slow":
            import time

            time.sleep(0.05)
        return [[Result(problem.gt_pose, runtime_s=0.0)] for _ in settings]


def test_one_result_per_setting_is_accepted():
    prob, _ = synthetic_problem(0, n=10)
    out = _E("flat").run(prob)
    assert len(out) == 6 and all(len(r) == 1 and r[0].success for r in out)


def test_settings_grid_and_options():
    e = _E()
    s = e.settings()
    assert len(s) == 6 and s[0] == {"a": "x", "b": 1} and s[-1] == {"a": "z", "b": 2}
    assert e.settings({"b": [5]}) == [{"b": 5}]
    assert e.default_setting() == {"a": "y", "b": 2}
    assert e.options == {"timeout_s": None, "opt": 1}
    with pytest.raises(ValueError, match="unknown options"):
        _E(nope=2)


@pytest.mark.parametrize(
    "behaviour,reason",
    [
        ("raise", "ValueError: bad input in toy.npz"),
        ("short", "returned 1 result lists for 6 settings"),
        ("not a result", "estimate must return a Result"),
        ("nan", "NaN pose"),
    ],
)
def test_run_never_raises(behaviour, reason):
    prob, _ = synthetic_problem(0, n=10)
    out = _E(behaviour).run(prob)
    assert len(out) == 6
    for [r] in out:
        assert not r.success and reason in r.failure_reason


def test_soft_timeout_voids_the_sweep():
    prob, _ = synthetic_problem(0, n=10)
    out = _E("slow", timeout_s=0.01).run(prob)
    assert all(not r.success and "time-out" in r.failure_reason for [r] in out)
    assert all(r.success for [r] in _E("slow", timeout_s=10).run(prob))


def test_stages_are_kept_on_failure():
    class Staged(_E):
        stages = ("p3p", "refine")

    [[a, b], *_] = Staged("raise").run(synthetic_problem(0, n=10)[0])
    assert (a.stage, b.stage) == ("p3p", "refine") and not a.success and "traceback" in a.diagnostics


def test_estimator_listing():
    from nre.errors import UnknownNameError
    from nre.estimators.listing import list_estimators

    info = {d["name"]: d for d in json.loads(list_estimators(as_json=True).text)["estimators"]}
    assert PAPER <= set(info)
    assert info["lo_ransac_poselib"]["grid"] == {"threshold": [1, 2, 4, 6, 8, 12, 16, 24]}
    assert info["nre_c2f"]["stages"] == ["p3p", "coarse_gnc", "fine_gnc"]
    assert info["fpr"]["n_settings"] == math.prod(len(v) for v in info["fpr"]["grid"].values())
    listing = list_estimators(names=["oracle"])
    assert "radius" in listing.text and listing.text.startswith("oracle  (") and not listing.import_errors
    with pytest.raises(UnknownNameError, match="available"):
        list_estimators(names=["nope"])
