"""Dense feature backends. ``get_backend(name, **options)`` returns a ``FeatureBackend`` (see base.py)."""

from nre.features.base import FeatureBackend, get_backend, register_backend

__all__ = ["FeatureBackend", "get_backend", "register_backend"]
