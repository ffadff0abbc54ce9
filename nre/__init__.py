"""NRE benchmark harness: Neural Reprojection Error and the absolute pose estimation benchmark around it."""

__version__ = "0.1.0"
