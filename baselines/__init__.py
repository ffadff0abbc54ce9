"""Pose estimators: one module per estimator, discovered by name (see nre.estimators.registry)."""
