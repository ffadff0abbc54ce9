"""Where the tuning pairs come from: a config check the workflow runs when it parses the config (dry runs included),
in a module that imports nothing heavy (the Snakefile imports it)."""

from __future__ import annotations


def check_tuning_source(config: dict, test_scenes: list[str] | None, scenes_yaml: bool) -> None:
    """The workflow's dry-run-time check (workflow/rules/common.smk) that the tuning split has a source: disjoint
    tuning scenes (``data.tuning_scenes``, or the tuning split of ROOT/scenes.yaml: ``scenes_yaml`` says whether it
    exists, and generated scenes always write one) or, with ``pairs.tuning_from: same_scene``, a share of the test
    scenes' images. Without one a single-scene config would fail in ``nre pairs`` or have no tuning pairs, and the
    fair protocol nothing to select on. ``pairs.n_tuning: 0`` is allowed: the fair columns are then n/a."""
    d, p = config["data"], config["pairs"]
    same = p.get("tuning_from", "scenes") == "same_scene"
    tun = d.get("tuning_scenes")
    if same:
        if tun:
            raise ValueError(
                "config: pairs.tuning_from: same_scene takes the tuning pairs from the test scenes' images; "
                "remove data.tuning_scenes"
            )
        if not p["n_tuning"]:
            raise ValueError("config: pairs.tuning_from: same_scene with pairs.n_tuning: 0 (no tuning pairs)")
        return
    if "tuning_fraction" in p:
        raise ValueError("config: pairs.tuning_fraction only applies with pairs.tuning_from: same_scene")
    if not p["n_tuning"]:
        return
    if tun is not None and len(tun) == 0:
        raise ValueError("config: data.tuning_scenes is empty but pairs.n_tuning > 0")
    if tun and test_scenes and set(tun) & set(test_scenes):
        raise ValueError(f"config: tuning scenes overlap the test scenes: {sorted(set(tun) & set(test_scenes))}")
    if tun is None and not d.get("synth") and not scenes_yaml:
        raise ValueError(
            f"config: pairs.n_tuning > 0 but no tuning scenes (data.tuning_scenes is null and {d['root']}/scenes.yaml "
            "does not exist). A single-scene run needs pairs.tuning_from: same_scene (tuning pairs from a share of "
            "its images) or pairs.n_tuning: 0 (the fair protocol then reports n/a)"
        )
