"""NRE estimators, registered like any other: coarse-to-fine NRE, single-level NRE, and Eq. 11 (RE as NRE)."""

from __future__ import annotations

from dataclasses import fields

from nre.estimators.base import Estimator
from nre.solver.options import NreOptions  # the estimators themselves are imported when they run (torch)


def _options(opts: dict) -> NreOptions:
    names = {f.name for f in fields(NreOptions)}
    return NreOptions(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in opts.items() if k in names})


_NRE_DEFAULTS = {f.name: f.default for f in fields(NreOptions)}


class NreCoarseToFine(Estimator):
    """Sec. 5.3: coarse maps -> MSAC + P3P -> coarse GNC -> local fine maps -> fine GNC (one row per stage)."""

    name = "nre_c2f"
    grid = {}
    defaults = dict(_NRE_DEFAULTS)
    needs = frozenset({"coarse_maps", "features"})
    stages = ("p3p", "coarse_gnc", "fine_gnc")

    def estimate_many(self, problem, settings):
        from nre.solver.nre import nre_coarse_to_fine

        return [nre_coarse_to_fine(problem, _options({**self.options, **s})) for s in settings]


class NreSingleLevel(Estimator):
    """MSAC + GNC on dense maps at the features' finest level (the paper's Table 1 'NRE' row)."""

    name = "nre_single"
    grid = {}
    defaults = dict(_NRE_DEFAULTS)
    needs = frozenset({"features"})

    def estimate_many(self, problem, settings):
        from nre.solver.nre import nre_single_level

        return [[nre_single_level(problem, _options({**self.options, **s}))] for s in settings]


class ReGaussian(Estimator):
    """Eq. 11: RE with a Gaussian robust loss of width sigma (pixels), i.e. NRE on one-hot maps at the argmax.

    Default (the paper's formulation, and the committed default reference's): MSAC ranks P3P hypotheses by Eq. 6 on
    the one-hot maps (a one-cell kernel) and GNC runs NRE's schedule scaled to end at sigma (from 3.3 sigma).
    Options ``init: gaussian`` (MSAC ranks by Eq. 11 at sigma, in pixels) and ``schedule: single`` (IRLS at sigma)
    are issue 15's fix for real resolution, set in every shipped config except config.yaml (see README)."""

    name = "re_gauss"
    grid = {"sigma": [1, 2, 3, 5, 8, 12, 16]}
    default_params = {"sigma": 5}
    defaults = {**_NRE_DEFAULTS, "init": "one_hot", "schedule": "scaled"}
    needs = frozenset({"matches"})

    def estimate_many(self, problem, settings):
        from nre.solver.nre import re_gaussian

        o = self.options
        res = re_gaussian(
            problem, [float(s["sigma"]) for s in settings], _options(o), init=o["init"], schedule=o["schedule"]
        )
        return [[r] for r in res]
