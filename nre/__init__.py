"""NRE benchmark harness: Neural Reprojection Error and the absolute pose estimation benchmark around it.

What a plug-in estimator needs (see ``nre.estimators.base``)::

    from nre import Estimator, Pose, Problem, Result
"""

__version__ = "0.1.0"

_API = {
    "Estimator": "nre.estimators.base",
    "Problem": "nre.estimators.problem",
    "Result": "nre.estimators.problem",
    "Matches": "nre.estimators.problem",
    "Pose": "nre.geometry.pose",
    "Camera": "nre.geometry.camera",
}
__all__ = sorted(_API)


def __getattr__(name):  # the API is imported on first use: `import nre.x` stays light
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'nre' has no attribute {name!r}")
