"""Reprojection-error (RE) baselines on the dense maps' argmax matches: LO-RANSAC (poselib, pycolmap, OpenCV USAC),
GC-RANSAC (OpenCV USAC_ACCURATE) and MAGSAC++ (OpenCV USAC_MAGSAC).

Every RE estimator gets identical inputs: Problem.matches.xy (target image pixels, this project's convention) with
scores. Distortion is handled once for all: observations are undistorted (Camera.undistort_points) and re-projected
with the camera's pinhole intrinsics, so thresholds stay in image pixels.

Pinned differences between libraries (recorded in each result's diagnostics):
- Trial budget: the same ``max_iterations`` (10000), ``confidence`` (0.9999) for all; poselib and pycolmap also get
  the same ``min_iterations`` (100; poselib's own default is 1000, pycolmap's 100) and ``dyn_num_trials_mult`` (3,
  both libraries' default: they run 3x the textbook number of trials). OpenCV's USAC has neither knob (textbook
  count, no minimum). pycolmap additionally caps its trials from ``min_inlier_ratio`` (0.1, left at its default).
- pycolmap's RANSAC seed is non-deterministic by default: it is set from the problem seed.
- poselib quaternions are (w, x, y, z), pycolmap's (x, y, z, w): poses go through rotation matrices only.
- OpenCV's GC-RANSAC stands in for pygcransac (0.1.1 crashes on absolute pose). OpenCV's USAC samples from a
  generator of fixed state (it ignores ``cv2.setRNGSeed``): the problem's seed reaches it as a seeded order of the
  matches. ``USAC_ACCURATE``'s graph-cut local optimisation draws from OpenCV's global generator, whose state carries
  over from call to call (identical calls gave different poses): it is reset from the problem's seed before every
  call, so GC-RANSAC is as reproducible as the others.
- MAGSAC++ (``USAC_MAGSAC``) marginalises over noise scales, so its threshold is not an inlier/outlier decision
  during the search: it bounds the scales and sets the returned inlier set, on which OpenCV polishes the final pose
  (so the pose stops changing with it above the noise level). It is still swept.
  pymagsac has no absolute-pose solver (it offers fundamental/essential matrix and homography only).
- Above the noise level (same inlier set) the poses of OpenCV's three USAC variants and pycolmap no longer change
  with the threshold; poselib's still do, slightly (docs/results-log.md).
- RANSAC libraries return a pose even for pure outliers (3-4 "inliers"): ``low_support`` flags results with fewer than
  ``min_inliers`` inliers; the pose is still scored unless ``fail_on_low_support`` is set.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from nre.estimators.base import Estimator
from nre.estimators.problem import Result
from nre.geometry import Pose
from nre.seeding import derive_seed

THRESHOLDS_PX = [1, 2, 4, 6, 8, 12, 16, 24]


class _Ransac(Estimator):
    grid = {"threshold": THRESHOLDS_PX}
    units = {"threshold": "px"}
    default_params = {"threshold": 8}
    defaults = {
        "max_iterations": 10000,
        "min_iterations": 100,
        "dyn_num_trials_mult": 3.0,
        "confidence": 0.9999,
        "min_inliers": 6,
        "fail_on_low_support": False,
    }
    library = ""
    needs = frozenset({"matches"})

    def estimate(self, problem, setting):
        if problem.matches is None:
            return Result.failure("no matches")
        uv, X, idx = problem.observations()
        if self.options.get("prosac"):  # PROSAC samples the best-scored matches first: order by decreasing score
            order = np.argsort(-np.nan_to_num(problem.matches.score[idx], nan=-np.inf), kind="stable")
            uv, X = uv[order], X[order]
        t0 = time.perf_counter()
        if len(uv) < 4:
            return Result.failure(f"only {len(uv)} matches", time.perf_counter() - t0)
        try:
            pose, inl, diag = self._solve(problem, uv, X, float(setting["threshold"]))
        except Exception as e:  # library errors are recorded
            return Result.failure(f"{type(e).__name__}: {e}", time.perf_counter() - t0)
        dt = time.perf_counter() - t0
        if pose is None or not (np.isfinite(pose.R).all() and np.isfinite(pose.t).all()):
            return Result.failure("no pose returned", dt, inliers=inl, diagnostics=diag)
        low = inl is not None and inl < self.options["min_inliers"]
        diag = {**self._budget(), **diag, "low_support": bool(low), "n_matches": len(uv)}
        if low and self.options["fail_on_low_support"]:
            return Result.failure(f"low support ({inl} inliers)", dt, inliers=inl, diagnostics=diag)
        return Result(pose, runtime_s=dt, inliers=inl, diagnostics=diag)

    def _budget(self) -> dict:
        """The RANSAC budget this library actually ran with (recorded with every result)."""
        o = self.options
        return {
            "library": self.library,
            "max_iterations": o["max_iterations"],
            "min_iterations": o["min_iterations"],
            "dyn_num_trials_mult": o["dyn_num_trials_mult"],
            "confidence": o["confidence"],
        }

    def _solve(self, problem, uv, X, threshold):  # pragma: no cover - abstract
        raise NotImplementedError


class LoRansacPoselib(_Ransac):
    """LO-RANSAC of poselib (P3P, local optimisation, then bundle refinement on the inliers). Option ``prosac``:
    progressive sampling of the matches in decreasing argmax score (off by default, as in the paper)."""

    name = "lo_ransac_poselib"
    label = "LO-RANSAC (poselib)"
    library = "poselib"
    defaults = {**_Ransac.defaults, "prosac": False}

    def _solve(self, problem, uv, X, threshold):
        import poselib

        ransac = {
            "max_reproj_error": threshold,
            "max_iterations": int(self.options["max_iterations"]),
            "min_iterations": int(self.options["min_iterations"]),
            "dyn_num_trials_mult": float(self.options["dyn_num_trials_mult"]),
            "success_prob": float(self.options["confidence"]),
            "seed": derive_seed(problem.seed, self.name) % 2**31,
            "progressive_sampling": bool(self.options["prosac"]),
        }
        pose, info = poselib.estimate_absolute_pose(uv, X, problem.camera.undistorted().to_dict(), ransac, {})
        return Pose(pose.R, pose.t), int(info["num_inliers"]), {"iterations": int(info.get("iterations", -1))}


class LoRansacPycolmap(_Ransac):
    """COLMAP's LO-RANSAC (P3P) and its non-linear refinement on the inliers."""

    name = "lo_ransac_pycolmap"
    label = "LO-RANSAC (COLMAP)"
    library = "pycolmap"

    def _solve(self, problem, uv, X, threshold):
        import pycolmap

        cam = problem.camera.undistorted().to_pycolmap()
        est = pycolmap.AbsolutePoseEstimationOptions()
        est.ransac.max_error = threshold
        est.ransac.max_num_trials = int(self.options["max_iterations"])
        est.ransac.min_num_trials = int(self.options["min_iterations"])
        est.ransac.dyn_num_trials_multiplier = float(self.options["dyn_num_trials_mult"])
        est.ransac.confidence = float(self.options["confidence"])
        est.ransac.random_seed = derive_seed(problem.seed, self.name) % 2**31
        res = pycolmap.estimate_and_refine_absolute_pose(uv + 0.5, X, cam, est)  # COLMAP pixel centres at +0.5
        if res is None:
            return None, 0, {}
        diag = {"min_inlier_ratio": est.ransac.min_inlier_ratio}
        return Pose.from_pycolmap(res["cam_from_world"]), int(res["num_inliers"]), diag


class _OpenCvUsac(_Ransac):
    flag: int = cv2.USAC_DEFAULT
    library = "opencv"

    def _budget(self) -> dict:
        flag = next(n for n in ("USAC_DEFAULT", "USAC_ACCURATE", "USAC_MAGSAC") if getattr(cv2, n) == self.flag)
        return {**super()._budget(), "min_iterations": None, "dyn_num_trials_mult": None, "usac_flag": flag}

    def _solve(self, problem, uv, X, threshold):
        # OpenCV's USAC draws its samples from a generator whose state is fixed (it ignores cv2.setRNGSeed), so the
        # matches go in a seeded order: the problem's seed decides the samples, as for the other RANSACs
        order = problem.rng(self.name, "usac order").permutation(len(uv))
        cv2.setRNGSeed(derive_seed(problem.seed, self.name, "opencv rng") % 2**31)  # GC-RANSAC's local optimisation
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            X[order],
            uv[order],
            problem.camera.K,
            None,
            iterationsCount=int(self.options["max_iterations"]),
            reprojectionError=threshold,
            confidence=float(self.options["confidence"]),
            flags=self.flag,
        )
        if not ok:
            return None, 0, {}
        R, _ = cv2.Rodrigues(rvec)
        return Pose(R, tvec.reshape(3)), 0 if inliers is None else len(inliers), {}


class LoRansacOpenCV(_OpenCvUsac):
    """LO-RANSAC through OpenCV's solvePnPRansac with USAC_DEFAULT."""

    name = "lo_ransac_opencv"
    label = "LO-RANSAC (OpenCV)"
    flag = cv2.USAC_DEFAULT


class GcRansac(_OpenCvUsac):
    """GC-RANSAC through OpenCV's USAC_ACCURATE (its graph-cut local optimisation draws from OpenCV's global
    generator, reset from the problem's seed before each call)."""

    name = "gc_ransac"
    label = "GC-RANSAC (OpenCV)"
    flag = cv2.USAC_ACCURATE


class MagsacPP(_OpenCvUsac):
    """MAGSAC++ through OpenCV's USAC_MAGSAC: the threshold bounds the marginalised noise scales and sets the
    returned inliers (on which the final pose is polished), it is not a cut-off during the search."""

    name = "magsac_pp"
    label = "MAGSAC++ (OpenCV)"
    flag = cv2.USAC_MAGSAC

    def _budget(self) -> dict:
        return {**super()._budget(), "threshold_role": "max noise scale and returned inliers (not a search cut-off)"}
