"""Dense feature backends. ``get_backend(name, **options)`` returns a ``FeatureBackend`` (see base.py)."""

from nre.features.base import GPU_BACKENDS, FeatureBackend, backend_uses_gpu, get_backend, register_backend

__all__ = ["GPU_BACKENDS", "FeatureBackend", "backend_uses_gpu", "get_backend", "register_backend"]
