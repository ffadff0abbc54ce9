"""The oracle: PnP without outliers on the ground-truth inlier matches, the upper bound of any estimator on these maps.

A match is a true inlier when its argmax (``Problem.matches.xy``) lies within ``radius`` image pixels of the point's
reprojection under the ground-truth pose (``Problem.gt_pose``). The pose is poselib's (P3P RANSAC with an unbounded
threshold, i.e. every match is an inlier, then its bundle refinement) on the same undistorted pinhole observations as
the RE estimators. It uses the ground truth, so it is a reference line in the tables, not a competitor.
"""

from __future__ import annotations

import time

import numpy as np

from nre.estimators.base import Estimator
from nre.estimators.problem import Result
from nre.geometry import Pose


class Oracle(Estimator):
    """PnP (poselib, no outliers) on the true inlier matches: argmax within ``radius`` px of the true reprojection."""

    name = "oracle"
    label = "Oracle (PnP on true inliers)"
    grid = {"radius": [4]}
    units = {"radius": "px"}
    defaults = {"min_matches": 4}
    needs = frozenset({"matches"})

    def estimate_many(self, problem, settings):
        import poselib

        if problem.gt_pose is None or problem.matches is None:
            return [[Result.failure("oracle needs the ground-truth pose and the matches")] for _ in settings]
        uv, X, idx = problem.observations()  # finite matches, undistorted once
        uv_gt, valid = problem.camera.project(problem.points3d[idx], problem.gt_pose)
        err = np.linalg.norm(problem.matches.xy[idx] - uv_gt, axis=1)  # in the original (distorted) image
        err[~valid] = np.inf
        n_all = max(problem.n, 1)
        out = []
        for s in settings:
            t0 = time.perf_counter()
            inl = err < float(s["radius"])
            k = int(inl.sum())
            diag = {"inlier_ratio": k / n_all, "radius": float(s["radius"])}
            if k < max(4, int(self.options["min_matches"])):
                out.append([Result.failure(f"only {k} true inliers", 0.0, inliers=k, diagnostics=diag)])
                continue
            ransac = {"max_reproj_error": 1e9, "min_iterations": 50, "max_iterations": 50, "seed": 0}  # L2: no outliers
            cam = problem.camera.undistorted().to_dict()
            pose, _ = poselib.estimate_absolute_pose(uv[inl], X[inl], cam, ransac, {})
            out.append([Result(Pose(pose.R, pose.t), runtime_s=time.perf_counter() - t0, inliers=k, diagnostics=diag)])
        return out
