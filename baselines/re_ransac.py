"""Reprojection-error (RE) baselines on the dense maps' argmax matches: LO-RANSAC (poselib, pycolmap, OpenCV USAC),
GC-RANSAC (OpenCV USAC_ACCURATE) and MAGSAC++ (OpenCV USAC_MAGSAC).

Every RE estimator gets identical inputs: Problem.matches.xy (target image pixels, this project's convention) with
scores. Distortion is handled once for all: observations are undistorted (Camera.undistort_points) and re-projected
with the camera's pinhole intrinsics, so thresholds stay in image pixels.

Pinned differences between libraries (recorded in each result's diagnostics):
- poselib and pycolmap multiply the number of RANSAC trials by ``dyn_num_trials_mult`` (default 3); we keep their
  defaults and record max iterations and confidence.
- pycolmap's RANSAC seed is non-deterministic by default: it is set from the problem seed.
- poselib quaternions are (w, x, y, z), pycolmap's (x, y, z, w): poses go through rotation matrices only.
- OpenCV's GC-RANSAC stands in for pygcransac (0.1.1 crashes on absolute pose); ``USAC_ACCURATE`` was seen to
  return different results on identical calls even with ``cv2.setRNGSeed``.
- MAGSAC++ (``USAC_MAGSAC``) marginalises over thresholds: its threshold only sets the returned inlier set; it is
  still swept. pymagsac has no absolute-pose solver.
- RANSAC libraries return a pose even for pure outliers (3-4 "inliers"): ``low_support`` flags results with fewer than
  ``min_inliers`` inliers; the pose is still scored unless ``fail_on_low_support`` is set.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from baselines.base import Estimator
from nre.geometry import Pose
from nre.problem import EstimateResult, Problem
from nre.seeding import derive_seed

THRESHOLDS_PX = [1, 2, 4, 6, 8, 12, 16, 24]


def pinhole_observations(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(undistorted pixels (M, 2), 3D points (M, 3), index into the problem's points) of the finite matches."""
    xy = problem.matches.xy
    ok = np.isfinite(xy).all(1) & np.isfinite(problem.points3d).all(1)
    idx = np.flatnonzero(ok)
    cam = problem.camera
    if cam.has_distortion:
        n = cam.undistort_points(xy[idx])
        uv = np.c_[cam.fx * n[:, 0] + cam.cx, cam.fy * n[:, 1] + cam.cy]
    else:
        uv = xy[idx].astype(np.float64)
    return uv, problem.points3d[idx].astype(np.float64), idx


class _Ransac(Estimator):
    grid = {"threshold": THRESHOLDS_PX}
    default_params = {"threshold": 8}
    defaults = {"max_iterations": 10000, "confidence": 0.9999, "min_inliers": 6, "fail_on_low_support": False}
    needs = frozenset({"matches"})

    def estimate_many(self, problem, settings):
        if problem.matches is None:
            return [[EstimateResult.failure("no matches")] for _ in settings]
        uv, X, _ = pinhole_observations(problem)
        out = []
        for s in settings:
            t0 = time.perf_counter()
            if len(uv) < 4:
                out.append([EstimateResult.failure(f"only {len(uv)} matches", time.perf_counter() - t0)])
                continue
            try:
                pose, inl, diag = self._solve(problem, uv, X, float(s["threshold"]))
            except Exception as e:  # library errors are recorded
                out.append([EstimateResult.failure(f"{type(e).__name__}: {e}", time.perf_counter() - t0)])
                continue
            dt = time.perf_counter() - t0
            if pose is None or not (np.isfinite(pose.R).all() and np.isfinite(pose.t).all()):
                out.append([EstimateResult.failure("no pose returned", dt, inliers=inl, diagnostics=diag)])
                continue
            low = inl is not None and inl < self.options["min_inliers"]
            diag = {
                **diag,
                "low_support": bool(low),
                "max_iterations": self.options["max_iterations"],
                "confidence": self.options["confidence"],
            }
            if low and self.options["fail_on_low_support"]:
                out.append([EstimateResult.failure(f"low support ({inl} inliers)", dt, inliers=inl, diagnostics=diag)])
            else:
                out.append([EstimateResult(True, pose, dt, inliers=inl, diagnostics=diag)])
        return out

    def _solve(self, problem, uv, X, threshold):  # pragma: no cover - abstract
        raise NotImplementedError


class LoRansacPoselib(_Ransac):
    name = "lo_ransac_poselib"

    def _solve(self, problem, uv, X, threshold):
        import poselib

        cam = problem.camera
        camera = {
            "model": "PINHOLE",
            "width": cam.width,
            "height": cam.height,
            "params": [cam.fx, cam.fy, cam.cx, cam.cy],
        }
        ransac = {
            "max_reproj_error": threshold,
            "max_iterations": self.options["max_iterations"],
            "success_prob": self.options["confidence"],
            "seed": derive_seed(problem.seed, self.name) % 2**31,
        }
        pose, info = poselib.estimate_absolute_pose(uv, X, camera, ransac, {})
        return Pose(pose.R, pose.t), int(info["num_inliers"]), {"iterations": int(info.get("iterations", -1))}


class LoRansacPycolmap(_Ransac):
    name = "lo_ransac_pycolmap"

    def _solve(self, problem, uv, X, threshold):
        import pycolmap

        from nre.geometry import Camera

        c = problem.camera
        cam = Camera("PINHOLE", c.width, c.height, [c.fx, c.fy, c.cx, c.cy]).to_pycolmap()
        est = pycolmap.AbsolutePoseEstimationOptions()
        est.ransac.max_error = threshold
        est.ransac.max_num_trials = self.options["max_iterations"]
        est.ransac.confidence = self.options["confidence"]
        est.ransac.random_seed = derive_seed(problem.seed, self.name) % 2**31
        res = pycolmap.estimate_and_refine_absolute_pose(uv + 0.5, X, cam, est)  # COLMAP pixel centres at +0.5
        if res is None:
            return None, 0, {}
        return Pose.from_pycolmap(res["cam_from_world"]), int(res["num_inliers"]), {}


class _OpenCvUsac(_Ransac):
    flag: int = cv2.USAC_DEFAULT

    def _solve(self, problem, uv, X, threshold):
        cv2.setRNGSeed(int(derive_seed(problem.seed, self.name) % 2**31))
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            X,
            uv,
            problem.camera.K,
            None,
            iterationsCount=self.options["max_iterations"],
            reprojectionError=threshold,
            confidence=self.options["confidence"],
            flags=self.flag,
        )
        if not ok:
            return None, 0, {}
        R, _ = cv2.Rodrigues(rvec)
        return Pose(R, tvec.reshape(3)), 0 if inliers is None else len(inliers), {}


class LoRansacOpenCV(_OpenCvUsac):
    name = "lo_ransac_opencv"
    flag = cv2.USAC_DEFAULT


class GcRansac(_OpenCvUsac):
    """GC-RANSAC through OpenCV's USAC_ACCURATE (not bit-reproducible across calls)."""

    name = "gc_ransac"
    flag = cv2.USAC_ACCURATE


class MagsacPP(_OpenCvUsac):
    """MAGSAC++ through OpenCV's USAC_MAGSAC: the threshold only sets the returned inliers."""

    name = "magsac_pp"
    flag = cv2.USAC_MAGSAC


class Oracle(Estimator):
    """PnP (poselib, no outliers) on the ground-truth inlier matches: argmax within ``radius`` px of the true
    reprojection. The upper bound any estimator on these maps can reach."""

    name = "oracle"
    grid = {"radius": [4]}
    defaults = {}
    needs = frozenset({"matches"})

    def estimate_many(self, problem, settings):
        import poselib

        out = []
        for s in settings:
            t0 = time.perf_counter()
            if problem.gt_pose is None or problem.matches is None:
                out.append([EstimateResult.failure("oracle needs the ground truth and matches")])
                continue
            uv_gt, valid = problem.camera.project(problem.points3d, problem.gt_pose)
            err = np.linalg.norm(problem.matches.xy - uv_gt, axis=1)
            inl = valid & (err < float(s["radius"]))
            if inl.sum() < 4:
                out.append(
                    [
                        EstimateResult.failure(
                            f"only {inl.sum()} true inliers",
                            time.perf_counter() - t0,
                            inliers=int(inl.sum()),
                            diagnostics={"inlier_ratio": float(inl.mean())},
                        )
                    ]
                )
                continue
            prob = Problem(
                problem.pair_id,
                problem.points3d[inl],
                problem.camera,
                problem.seed,
                matches=type(problem.matches)(problem.matches.xy[inl], problem.matches.score[inl]),
            )
            uv, X, _ = pinhole_observations(prob)
            c = problem.camera
            cam = {"model": "PINHOLE", "width": c.width, "height": c.height, "params": [c.fx, c.fy, c.cx, c.cy]}
            pose, info = poselib.estimate_absolute_pose(uv, X, cam, {"max_reproj_error": 1e6, "seed": 0}, {})
            out.append(
                [
                    EstimateResult(
                        True,
                        Pose(pose.R, pose.t),
                        time.perf_counter() - t0,
                        inliers=int(inl.sum()),
                        diagnostics={"inlier_ratio": float(inl.mean())},
                    )
                ]
            )
        return out
