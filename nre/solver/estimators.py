"""The paper's estimators under the common contract: coarse-to-fine NRE (Sec. 5.3), single-level NRE (Table 1) and
RE with a Gaussian loss as a special case of NRE (Eq. 11). Their defaults are the settings measured best here; the
paper's literal settings are the preset ``paper``."""

from __future__ import annotations

from dataclasses import fields

from nre.estimators.base import Estimator
from nre.solver.options import DEFAULT_SIGMAS, NreOptions  # the solvers themselves import torch: loaded when run


def _options(opts: dict) -> NreOptions:
    names = {f.name for f in fields(NreOptions)}
    return NreOptions(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in opts.items() if k in names})


_NRE_DEFAULTS = {f.name: f.default for f in fields(NreOptions)}


class NreCoarseToFine(Estimator):
    """Sec. 5.3: coarse maps -> MSAC + P3P -> coarse GNC -> local fine maps -> fine GNC (one row per stage).
    Default coarse schedule without the sigma-2 step; preset ``paper``: the paper's (2, 1, 0.9, ..., 0.6)."""

    name = "nre_c2f"
    label = "NRE coarse-to-fine"
    defaults = dict(_NRE_DEFAULTS)
    presets = {"paper": {"coarse_sigmas": DEFAULT_SIGMAS}}
    needs = frozenset({"coarse_maps", "features"})
    stages = ("p3p", "coarse_gnc", "fine_gnc")

    def estimate(self, problem, setting):
        from nre.solver.nre import nre_coarse_to_fine

        return nre_coarse_to_fine(problem, _options({**self.options, **setting}))


class NreSingleLevel(Estimator):
    """MSAC + GNC on dense maps at the features' finest level (the paper's Table 1 'NRE' row)."""

    name = "nre_single"
    label = "NRE"
    defaults = dict(_NRE_DEFAULTS)
    needs = frozenset({"features"})

    def estimate(self, problem, setting):
        from nre.solver.nre import nre_single_level

        return nre_single_level(problem, _options({**self.options, **setting}))


class ReGaussian(Estimator):
    """Eq. 11: RE with a Gaussian robust loss of width sigma (pixels), i.e. NRE on one-hot maps at the argmax.

    MSAC ranks its P3P hypotheses (shared by every sigma of a sweep) by Eq. 11 at sigma (``init: gaussian``) and
    IRLS minimises it at sigma (``schedule: single``). Preset ``paper``: NRE's pipeline on one-hot maps (``init:
    one_hot``, Eq. 6 with a one-cell kernel; ``schedule: scaled``, NRE's schedule scaled to end at sigma)."""

    name = "re_gauss"
    label = "RE, Gaussian loss (Eq. 11)"
    grid = {"sigma": [1, 2, 3, 5, 8, 12, 16]}
    units = {"sigma": "px"}
    default_params = {"sigma": 5}
    defaults = {**_NRE_DEFAULTS, "init": "gaussian", "schedule": "single"}
    presets = {"paper": {"init": "one_hot", "schedule": "scaled"}}
    needs = frozenset({"matches"})

    def estimate_many(self, problem, settings):
        from nre.solver.nre import re_gaussian

        o = self.options
        res = re_gaussian(
            problem, [float(s["sigma"]) for s in settings], _options(o), init=o["init"], schedule=o["schedule"]
        )
        return [[r] for r in res]
