"""Correspondence maps: dense sparse-truncated loss maps, local fine maps, the per-pair cache."""
