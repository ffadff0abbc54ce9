"""The per-pair map cache, PairFeatures, `nre maps` and the HDF5 export."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import SAMPLE, TINY_MD

from nre.data.pairdata import PairData
from nre.estimators.runner import estimate_pairs
from nre.features import get_backend
from nre.features.access import PairFeatures
from nre.geometry import img_to_map, map_to_img
from nre.maps import cache
from nre.maps.dense import correspondence_logits, log_omega
from nre.maps.job import compute_maps


@pytest.fixture(scope="module")
def pair():
    return PairData.load_npz(SAMPLE)


@pytest.fixture(scope="module")
def backend():
    return get_backend("dsift")


@pytest.fixture(scope="module")
def arrays(pair, backend):
    return cache.compute_pair_cache(pair, backend, 400, 3)


def test_cache_contents_against_brute_force(pair, backend, arrays):
    """Coarse sparse maps and dense-level argmax equal full dense maps computed independently (raw descriptors,
    temperature applied in the softmax), and the argmax is in target image pixels."""
    capped = pair.capped(400, 3)
    assert len(arrays["point_index"]) == 400 and np.all(np.diff(arrays["point_index"]) > 0)
    np.testing.assert_allclose(pair.points3d[arrays["point_index"]], capped.points3d)
    f = PairFeatures(backend, capped)
    for lv in ("coarse", "fine"):
        raw = f._extract("source", lv).sample(f.source_points_xy()[0])
        np.testing.assert_allclose(f.source_descriptors(lv).numpy(), raw.numpy() / backend.temperature, rtol=1e-5)
    tc, td = f.target_features("coarse"), f.target_features("fine")
    T = backend.temperature
    logp = correspondence_logits(f.raw_source_descriptors("coarse"), tc.desc, T).numpy()
    dense_loss = np.minimum(-logp, log_omega(*tc.desc.shape[1:]))
    prob = cache.problem_from_arrays(capped, arrays, 0)
    cm = prob.coarse_maps
    assert cm.shape == tuple(tc.desc.shape[1:]) and cm.trunc == pytest.approx(log_omega(*cm.shape))
    np.testing.assert_allclose(cm.to_dense().reshape(400, -1), dense_loss, atol=5e-3, rtol=2e-3)  # float16 values
    am = logp.argmax(1)
    np.testing.assert_array_equal(prob.coarse_stats.argmax_xy, np.c_[am % cm.shape[1], am // cm.shape[1]])
    logp_f = correspondence_logits(f.raw_source_descriptors("fine"), td.desc, T)
    mx, amf = logp_f.max(1)
    w = td.desc.shape[2]
    xy = map_to_img(np.c_[amf.numpy() % w, amf.numpy() // w], td.scale)
    np.testing.assert_allclose(prob.matches.xy, xy, atol=1e-3)
    np.testing.assert_allclose(prob.matches.score, mx.exp().numpy(), rtol=1e-4)
    ent = -(logp_f.exp() * logp_f).sum(1).numpy()
    np.testing.assert_allclose(prob.matches.entropy, ent, rtol=1e-3, atol=1e-4)


def test_cached_matches_find_the_true_projections(pair, arrays):
    """Independent truth: the ground-truth projections in the target. Measured on the sample pair: ~80% of the
    visible points have their dense-level argmax within 8 px, ~70% of coarse argmaxes within one coarse cell."""
    capped = pair.capped(400, 3)
    cam = capped.target_camera
    uv, ok = cam.project(capped.points3d, capped.target_pose)
    ok &= cam.in_image(uv)
    err = np.linalg.norm(arrays["match_xy"][ok] - uv[ok], axis=1)
    assert np.mean(err < 8) > 0.6, np.mean(err < 8)
    cell = img_to_map(uv[ok], arrays["coarse_scale"])
    cerr = np.abs(arrays["coarse_argmax"][ok] - cell).max(1)
    assert np.mean(cerr <= 1.0) > 0.5, np.mean(cerr <= 1.0)


def test_save_load_roundtrip_and_identity_checks(pair, backend, arrays, tmp_path):
    p = cache.save(tmp_path / "x.npz", arrays)
    capped = pair.capped(400, 3)
    prob = cache.load_problem(capped, p, seed=7, backend=backend)
    assert prob.seed == 7 and prob.n == 400 and prob.features is not None
    assert prob.features._tgt == {}  # lazily: no descriptor computed until an estimator asks
    np.testing.assert_allclose(prob.matches.xy, arrays["match_xy"])
    assert cache.is_current(p, pair.pair_id, backend, 400, 3)
    assert not cache.is_current(p, pair.pair_id, backend, 500, 3)
    assert not cache.is_current(p, pair.pair_id, backend, 400, 4)
    assert not cache.is_current(p, pair.pair_id, get_backend("dsift", temperature=0.03), 400, 3)
    assert not cache.is_current(p, "other", backend, 400, 3)
    assert not cache.is_current(tmp_path / "missing.npz", pair.pair_id, backend)
    with pytest.raises(cache.CacheError, match="differ from the pair's"):
        cache.load_problem(pair.capped(300, 3), p, 0)
    with pytest.raises(cache.CacheError, match="not other"):
        cache.load_problem(PairData(**{**capped.__dict__, "pair_id": "other"}), p, 0)
    with pytest.raises(cache.CacheError, match="cache made with"):
        cache.load_problem(capped, p, 0, get_backend("dsift", fine_stride=8))
    cache.save(tmp_path / "old.npz", {**arrays, "version": np.array(1)})
    with pytest.raises(cache.CacheError, match="recompute"):
        cache.load(tmp_path / "old.npz")
    assert not cache.is_current(tmp_path / "old.npz", pair.pair_id, backend, 400, 3)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(cache.CacheError, match="unreadable"):
        cache.load(tmp_path / "bad.npz")
    with pytest.raises(cache.CacheError, match="no map cache"):
        cache.load(tmp_path / "none.npz")


def test_build_problem_signatures(pair, backend):
    small = pair.capped(150, 0)
    a = cache.build_problem(pair, backend, 150, 0)
    b = cache.build_problem(small, backend, 0)  # the older (pair, backend, seed) form
    assert a.n == b.n == 150 and a.features is not None
    np.testing.assert_array_equal(a.matches.xy, b.matches.xy)
    assert a.features._tgt  # descriptors kept for the estimators


def test_cache_size_at_1000_points_on_640x480(pair, backend, tmp_path):
    """At most 2 MB per pair at 1000 points: the sample pair upscaled to 640 x 480 (images and cameras)."""
    import cv2

    from nre.features.images import load_image, resize_with_camera

    big = {}
    for side in ("source", "target"):
        img, cam, _ = resize_with_camera(
            load_image(getattr(pair, f"{side}_image")), getattr(pair, f"{side}_camera"), size=(640, 480)
        )
        cv2.imwrite(str(tmp_path / f"{side}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        big[side] = cam
    p2 = PairData(
        pair.pair_id,
        tmp_path / "source.png",
        tmp_path / "target.png",
        pair.points3d,
        big["source"],
        big["target"],
        pair.source_pose,
        pair.target_pose,
    )
    arrays = cache.compute_pair_cache(p2, backend, 1000, 0)
    assert tuple(arrays["coarse_shape"]) == (60, 80) and tuple(arrays["dense_shape"]) == (120, 160)  # strides 8, 4
    size = cache.save(tmp_path / "big.npz", arrays).stat().st_size
    assert size < 2e6, size


def test_nre_maps_command(tmp_path):
    """Two pairs and a broken row: the broken one is recorded as failed, the others cached; a rerun reuses them;
    another --max-points recomputes; the HDF5 export reads back. Data: the committed MegaDepth-layout tiny root."""
    from nre.data.pairs import load_pair, sample_pairs
    from nre.maps.export import read_pair

    df = sample_pairs(TINY_MD, ["0016"], 3, "test", min_covisible=20, seed=0).head(2)
    bad = df.iloc[:1].copy()
    bad["pair_id"], bad["target"] = "0016__bad", "missing.jpg"
    table = pd.concat([df, bad])
    table.to_csv(tmp_path / "pairs.csv", index=False)
    out, man = tmp_path / "maps", tmp_path / "manifest.csv"
    args = dict(pairs=tmp_path / "pairs.csv", root=TINY_MD, out_dir=out, max_points=40, seed=1, manifest=man)
    compute_maps(**args, export_h5=tmp_path / "m.h5")
    m = pd.read_csv(man)
    assert list(m["status"]) == ["ok", "ok", "failed"] and "missing.jpg" in m["error"].iloc[2]
    assert not m["cached"].any() and (m["bytes"].iloc[:2] > 0).all()
    mtimes = [Path(p).stat().st_mtime_ns for p in m["path"].iloc[:2]]
    compute_maps(**args)
    m2 = pd.read_csv(man)
    assert list(m2["cached"]) == [True, True, False]
    assert [Path(p).stat().st_mtime_ns for p in m2["path"].iloc[:2]] == mtimes
    row = df.iloc[1]
    pair = load_pair(TINY_MD, row).capped(40, 1)
    prob = cache.load_problem(pair, out / f"{row['pair_id']}.npz", 0)
    h5 = read_pair(tmp_path / "m.h5", row["pair_id"])
    np.testing.assert_allclose(h5["points3d"], pair.points3d)
    np.testing.assert_allclose(h5["match_xy"], prob.matches.xy, atol=1e-4)
    np.testing.assert_array_equal(h5["coarse_maps"].cells, prob.coarse_maps.cells)
    assert json.loads(str(np.load(out / f"{row['pair_id']}.npz")["backend_options"]))["name"] == "dsift"
    compute_maps(**dict(args, max_points=30), chunk="1/3")  # another cap: recomputed
    m3 = pd.read_csv(man)
    assert len(m3) == 1 and not m3["cached"].iloc[0] and m3["n_points"].iloc[0] == 30


def test_features_are_lazy_and_temperature_folded(pair):
    be = get_backend("dsift", temperature=0.5)
    f = PairFeatures(be, pair.capped(50, 0))
    assert f._tgt == {} and f._src_maps == {}
    d = f.source_descriptors("fine")
    assert f._tgt == {} and set(f._src_maps) == {"fine"}  # level by level: the coarse one is never computed here
    raw = f._src_maps["fine"].sample(f.source_points_xy()[0])
    np.testing.assert_allclose(d.numpy(), raw.numpy() / 0.5, rtol=1e-6)
    np.testing.assert_allclose(f.raw_source_descriptors("fine").numpy(), raw.numpy(), rtol=1e-6)
    assert float(torch.linalg.norm(d, dim=1).max()) <= 2.0 + 1e-5  # interpolated unit descriptors / 0.5
    f.release_source_maps()
    assert f._src_maps == {} and set(f._src) == {"coarse", "fine"}
    with pytest.raises(KeyError, match="no level"):
        f.target_map("medium")


def _spy_extract(backend) -> list:
    """Record the levels of every ``backend.extract`` call (on this backend object only)."""
    calls = []
    orig = backend.extract

    def spy(img, levels=None):
        calls.append(tuple(levels))
        return orig(img, levels)

    backend.extract = spy
    return calls


def test_shared_level_backends_extract_every_level_at_once(pair):
    """A backend whose levels share one network pass gets one extract call per image with all its levels."""
    be = get_backend("dsift")
    calls = _spy_extract(be)
    f = PairFeatures(be, pair.capped(20, 0))
    f.target_map("fine")
    f.target_map("coarse")
    assert calls == [("fine",), ("coarse",)]
    calls.clear()
    be.shared_levels = True
    g = PairFeatures(be, pair.capped(20, 0))
    g.target_map("fine")
    g.target_map("coarse")
    assert calls == [("coarse", "fine")] and set(g._tgt) == {"coarse", "fine"}


def test_a_coarse_stride_change_is_another_cache(pair, backend, arrays, tmp_path):
    """The coarse stride changes the cached coarse maps: the cache records it (backend options) and a backend with
    another stride refuses it (``nre maps`` recomputes it: ``is_current`` is False), naming the option."""
    p = cache.save(tmp_path / "s8.npz", arrays)
    capped = pair.capped(400, 3)
    s16 = get_backend("dsift", coarse_stride=16)
    assert json.loads(str(arrays["backend_options"]))["strides"]["coarse"] == 8
    assert not cache.is_current(p, pair.pair_id, s16, 400, 3)
    with pytest.raises(cache.CacheError, match=r"strides: \{'coarse': 8, 'fine': 4\} \(cache\) vs \{'coarse': 16"):
        cache.load_problem(capped, p, 0, s16)
    a16 = cache.compute_pair_cache(pair, s16, 400, 3, matches=False)
    W, H = pair.target_camera.size
    assert tuple(a16["coarse_shape"]) == (round(H / 16), round(W / 16))
    assert tuple(arrays["coarse_shape"]) == (round(H / 8), round(W / 8))
    p16 = cache.save(tmp_path / "s16.npz", a16)
    assert cache.is_current(p16, pair.pair_id, s16, 400, 3, matches=False)
    assert not cache.is_current(p16, pair.pair_id, backend, 400, 3, matches=False)
    assert cache.load_problem(capped, p16, 0, s16).coarse_maps.shape == tuple(a16["coarse_shape"])


def test_coarse_only_cache(pair, backend, arrays, tmp_path):
    """``matches=False`` (nre maps --no-matches): the same coarse maps, no matches and no finest-level features
    computed; the Problem has no matches (RE estimators then fail with a reason) and coarse-to-fine NRE gives the
    same poses as from a full cache; a request with matches recomputes a coarse-only cache."""
    from baselines.re_ransac import LoRansacPoselib
    from nre.solver.estimators import NreCoarseToFine

    be = get_backend("dsift")  # a fresh object: the module's backend fixture stays unspied
    calls = _spy_extract(be)
    coarse_only = cache.compute_pair_cache(pair, be, 400, 3, matches=False)
    assert calls == [("coarse",), ("coarse",)]  # source and target, coarse level only
    assert not bool(coarse_only["has_matches"]) and "match_xy" not in coarse_only
    for k in ("coarse_offsets", "coarse_cells", "coarse_values", "coarse_argmax", "point_index"):
        np.testing.assert_array_equal(coarse_only[k], arrays[k])
    full_path, coarse_path = tmp_path / "full.npz", tmp_path / "coarse.npz"
    cache.save(full_path, arrays)
    cache.save(coarse_path, coarse_only)
    pid = str(arrays["pair_id"])
    assert cache.is_current(coarse_path, pid, backend, 400, 3, matches=False)
    assert not cache.is_current(coarse_path, pid, backend, 400, 3)  # matches wanted: recompute
    assert cache.is_current(full_path, pid, backend, 400, 3, matches=False)  # a full cache serves both
    capped = pair.capped(400, 3)
    p_full = cache.load_problem(capped, full_path, 5, backend)
    p_coarse = cache.load_problem(capped, coarse_path, 5, backend)
    assert p_coarse.matches is None and "dense_shape" not in p_coarse.extras
    [[fail]] = LoRansacPoselib().run(p_coarse, [{"threshold": 8}])
    assert not fail.success and "no matches" in fail.failure_reason
    [a] = NreCoarseToFine().run(p_full, [{}])
    [b] = NreCoarseToFine().run(p_coarse, [{}])
    for ra, rb in zip(a, b):
        assert ra.success == rb.success
        if ra.success:
            np.testing.assert_array_equal(ra.pose.R, rb.pose.R)
            np.testing.assert_array_equal(ra.pose.t, rb.pose.t)


def test_feature_memo_serves_an_image_once_with_identical_maps(pair):
    """With a FeatureMemo, a second pair sharing the source image (here: the same pair again, capped differently)
    extracts nothing for it and gets the very same maps; the pair caches are bit-identical to those computed without
    the memo; a changed image (one pixel) is a miss."""
    from nre.features.base import enable_memo

    plain = get_backend("dsift")
    ref = [cache.compute_pair_cache(pair, plain, n, 3) for n in (300, 200)]
    be = enable_memo(get_backend("dsift"), 64)
    calls = _spy_extract(be)
    got = [cache.compute_pair_cache(pair, be, n, 3) for n in (300, 200)]
    assert calls == [("coarse",), ("fine",), ("coarse",), ("fine",)]  # the first pair only: source and target
    assert be.memo.hits == 4 and be.memo.misses == 4 and len(be.memo) == 4
    for a, b in zip(ref, got):
        assert set(a) == set(b)
        for k in a:
            if k != "seconds":
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    f = PairFeatures(be, pair.capped(20, 0))
    assert f.target_features("fine") is PairFeatures(be, pair.capped(30, 1)).target_features("fine")
    img = _load_target(pair).copy()
    assert be.memo.get(be.memo.image_key(img), "fine") is not None
    img[0, 0, 0] ^= 1
    key = be.memo.image_key(img)
    assert be.memo.get(key, "fine") is None  # a different image never hits


def _load_target(pair):
    from nre.features.images import load_image

    return load_image(pair.target_image)


def test_feature_memo_evicts_least_recently_used_within_its_size():
    from nre.features.base import DenseFeatures, FeatureMemo

    def feats(mb):
        return DenseFeatures(torch.zeros(int(mb * 2**20) // 4), np.ones(2), (1, 1))

    m = FeatureMemo(max_mb=3)
    m.put("a", "fine", feats(1))
    m.put("b", "fine", feats(1))
    m.put("c", "fine", feats(1))
    assert m.nbytes == 3 * 2**20 and len(m) == 3
    assert m.get("a", "fine") is not None  # a is now the most recent: b goes first
    m.put("d", "fine", feats(1))
    assert m.get("b", "fine") is None and m.get("a", "fine") is not None and len(m) == 3
    m.put("big", "fine", feats(4))  # larger than the memo: not kept, nothing evicted
    assert m.get("big", "fine") is None and len(m) == 3 and m.nbytes == 3 * 2**20
    m.put("a", "fine", feats(2))  # replacing an entry accounts its old size
    assert m.nbytes <= 3 * 2**20 and m.get("a", "fine") is not None
    with pytest.raises(ValueError, match=">= 0"):
        FeatureMemo(-1)


def test_feature_memo_size_comes_from_the_environment(monkeypatch):
    from nre.features.base import enable_memo, memo_mb_default

    monkeypatch.delenv("NRE_FEATURE_MEMO_MB", raising=False)
    assert memo_mb_default() == 512
    assert get_backend("dsift").memo is None  # off unless a job turns it on (Table 3 times extraction per pair)
    monkeypatch.setenv("NRE_FEATURE_MEMO_MB", "0")
    assert enable_memo(get_backend("dsift"), memo_mb_default()).memo is None
    monkeypatch.setenv("NRE_FEATURE_MEMO_MB", "lots")
    with pytest.raises(ValueError, match="NRE_FEATURE_MEMO_MB"):
        memo_mb_default()


def test_cache_identity_is_the_weights_content_not_their_path(pair, tmp_path):
    """Caches made with network weights stay valid when the same files sit elsewhere (a moved checkout: the recorded
    sha256 is the identity, not the path); other weights make them stale, and a cache is refused by load_problem."""
    import shutil

    from nre.features.nets.nre_nets import COMPACT_WEIGHTS

    be = get_backend("nre_compact")
    arrays = cache.compute_pair_cache(pair, be, 40, 0, matches=False)
    path = tmp_path / "c.npz"
    cache.save(path, arrays)
    copies = {}
    for lv, p in COMPACT_WEIGHTS.items():
        copies[lv] = tmp_path / "moved" / p.name
        copies[lv].parent.mkdir(exist_ok=True)
        shutil.copy(p, copies[lv])
    moved = get_backend("nre_compact", coarse_weights=str(copies["coarse"]), fine_weights=str(copies["fine"]))
    assert cache.backend_options(moved) != str(arrays["backend_options"])  # the paths differ ...
    assert cache.is_current(path, pair.pair_id, moved, 40, 0, matches=False)  # ... the maps do not
    cache.problem_from_arrays(pair.capped(40, 0), arrays, 0, moved)
    # other weights at the same path: one coarse weight changed
    ck = torch.load(copies["coarse"], map_location="cpu", weights_only=False)
    ck["state_dict"]["body.0.conv.weight"] = ck["state_dict"]["body.0.conv.weight"] * 1.01
    torch.save(ck, copies["coarse"])
    other = get_backend("nre_compact", coarse_weights=str(copies["coarse"]), fine_weights=str(copies["fine"]))
    assert not cache.is_current(path, pair.pair_id, other, 40, 0, matches=False)
    with pytest.raises(cache.CacheError, match="cache made with"):
        cache.problem_from_arrays(pair.capped(40, 0), arrays, 0, other)
    # a backend without digests (dsift) still compares every option
    d = cache.backend_options(get_backend("dsift"))
    assert cache.same_backend(d, get_backend("dsift"))
    assert not cache.same_backend(d, get_backend("dsift", fine_stride=8))


def test_pair_ids_that_would_leave_the_maps_folder_are_rejected(tmp_path):
    """A pair id is a file name: ``../x`` used to write ``<out-dir>/../x.npz``. Now nre maps records the pair as
    failed (no file anywhere) and nre estimate gives it failure rows: the other pairs run, no row is dropped."""
    from nre.data.pairdata import check_pair_id
    from nre.data.pairs import sample_pairs

    for ok in ("0016_0__0004__0009", "test_00__0001__0002", "a.b+c=d@e,f-g"):
        assert check_pair_id(ok) == ok
    for bad in ("../escaped", "a/b", "/abs", "..", ".hidden", "-rf", "", "a\\b", "x" * 201, "a b", "a\nb"):
        with pytest.raises(ValueError, match="unsafe pair id"):
            check_pair_id(bad)
    df = sample_pairs(TINY_MD, ["0016"], 3, "test", min_covisible=20, seed=0).head(2)
    df.loc[df.index[0], "pair_id"] = "../escaped"
    df.to_csv(tmp_path / "pairs.csv", index=False)
    out, man = tmp_path / "run" / "maps", tmp_path / "manifest.csv"
    common = dict(pairs=tmp_path / "pairs.csv", root=TINY_MD, max_points=30)
    compute_maps(out_dir=out, manifest=man, **common)
    m = pd.read_csv(man)
    assert list(m["status"]) == ["failed", "ok"] and "unsafe pair id '../escaped'" in m["error"].iloc[0]
    assert not (tmp_path / "run" / "escaped.npz").exists() and sorted(p.name for p in out.iterdir()) == [
        f"{df['pair_id'].iloc[1]}.npz"
    ]
    rows = tmp_path / "rows.parquet"
    estimate_pairs(maps_dir=out, estimator="oracle", out=rows, **common)
    r = pd.read_parquet(rows)
    assert len(r) == 2 and list(r["success"]) == [False, True]
    assert "unsafe pair id" in r["failure_reason"].iloc[0]
