"""The NRE solvers: MSAC initialisation, GNC/IRLS refinement, the NRE estimators."""
