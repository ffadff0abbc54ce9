import numpy as np
import pytest
import torch

from nre.estimators.testing import sparse_from_logprob
from nre.maps.dense import SparseLossMaps, bilinear_corners, dense_maps, log_omega, lookup_dense


def test_dense_maps_match_brute_force_softmax():
    rng = np.random.default_rng(0)
    src = torch.as_tensor(rng.normal(size=(37, 8)), dtype=torch.float32)
    tgt = torch.as_tensor(rng.normal(size=(8, 5, 7)), dtype=torch.float32)
    maps, stats = dense_maps(src, tgt, temperature=0.5, chunk=10)
    logits = (src.numpy() @ tgt.numpy().reshape(8, -1)) / 0.5
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    loss = -logp
    trunc = np.log(5 * 7 + 1)
    assert maps.trunc == pytest.approx(trunc)
    dense = maps.to_dense()
    np.testing.assert_allclose(dense.reshape(37, -1), np.minimum(loss, trunc), rtol=1e-5, atol=1e-5)
    am = loss.argmin(1)
    np.testing.assert_array_equal(stats.argmax_xy[:, 0], am % 7)
    np.testing.assert_array_equal(stats.argmax_xy[:, 1], am // 7)
    np.testing.assert_allclose(stats.entropy, -(np.exp(logp) * logp).sum(1), rtol=1e-4, atol=1e-5)


def test_zero_loss_cell_is_kept():
    # a map with probability ~1 at one cell: its loss is exactly 0 and must stay in the sparse form
    logp = np.full((2, 4, 4), -1e4)
    logp[0, 1, 2] = 0.0
    logp[1] = np.log(1 / 16)
    m = sparse_from_logprob(logp, (1, 1))
    assert m.counts.tolist() == [1, 16]
    assert m.values[0] == 0.0
    torch_maps, _ = dense_maps(
        torch.tensor([[100.0, 0.0]]), torch.tensor(np.stack([np.eye(4) * 0 + 0, np.zeros((4, 4))]))
    )
    assert torch_maps.nnz == 16  # uniform map: every cell below ln(17)


def test_bilinear_lookup_out_rule_and_band():
    h, w = 3, 4
    dense = np.arange(h * w, dtype=np.float32).reshape(1, h, w)
    trunc = 100.0
    # at a cell centre: the cell's value
    v = lookup_dense(dense, np.array([0]), np.array([[2.0, 1.0]]), np.array([True]), trunc)
    assert v[0] == pytest.approx(dense[0, 1, 2])
    # halfway between two cells
    v = lookup_dense(dense, np.array([0]), np.array([[1.5, 0.0]]), np.array([True]), trunc)
    assert v[0] == pytest.approx(1.5)
    # the band between the last cell centre and the image border mixes the edge cell with "out"
    v = lookup_dense(dense, np.array([0]), np.array([[3.25, 0.0]]), np.array([True]), trunc)
    assert v[0] == pytest.approx(0.75 * 3 + 0.25 * trunc)
    # behind the camera: all "out"
    v = lookup_dense(dense, np.array([0]), np.array([[1.0, 1.0]]), np.array([False]), trunc)
    assert v[0] == trunc
    flat, wts, inside = bilinear_corners(np.array([[-0.5, 0.0]]), (h, w))
    assert inside[0].tolist() == [False, True, False, True]
    np.testing.assert_allclose(wts.sum(-1), 1.0)


def test_sparse_roundtrip_subset_and_arrays():
    rng = np.random.default_rng(1)
    logp = np.log(rng.dirichlet(np.full(20, 0.2), size=6)).reshape(6, 4, 5)
    m = sparse_from_logprob(logp, (0.5, 0.25))
    sub = m.subset(np.array([4, 1]))
    np.testing.assert_array_equal(sub.to_dense(), m.to_dense()[[4, 1]])
    back = SparseLossMaps.from_arrays(m.to_arrays("x_"), "x_")
    np.testing.assert_allclose(back.to_dense(), m.to_dense(), atol=1e-2)  # values stored as float16
    assert back.trunc == pytest.approx(log_omega(4, 5))


def test_inconsistent_sparse_maps_rejected():
    with pytest.raises(ValueError, match="inconsistent"):
        SparseLossMaps((2, 2), [0, 3], [0, 1], [0.1, 0.2], 1.0)


def test_sparse_argmin_and_entropy():
    from nre.maps.dense import sparse_argmin, sparse_entropy

    rng = np.random.default_rng(2)
    logp = np.log(rng.dirichlet(np.full(20, 0.3), size=5)).reshape(5, 4, 5)
    logp[4] = -1e4
    logp[4, 2, 3] = 0.0  # a one-cell map: loss exactly 0, kept and found
    m = sparse_from_logprob(logp, (1, 1))
    cells, mins = sparse_argmin(m)
    flat = (-logp).reshape(5, -1).argmin(1)
    np.testing.assert_array_equal(cells[:, 0], flat % 5)
    np.testing.assert_array_equal(cells[:, 1], flat // 5)
    np.testing.assert_allclose(mins, (-logp).reshape(5, -1).min(1), rtol=1e-6)
    assert mins[4] == 0.0 and tuple(cells[4]) == (3, 2)
    # entropy from the stored cells: a lower bound of the exact one, exact for the one-cell map
    p = np.exp(logp.reshape(5, -1))
    exact = -(p * np.where(p > 0, np.log(np.maximum(p, 1e-300)), 0)).sum(1)
    ent = sparse_entropy(m)
    assert (ent <= exact + 1e-6).all() and ent[4] == 0.0
    # an empty map: no argmin, minimum at the truncation level
    empty = m.subset(np.array([0]))
    empty = SparseLossMaps(empty.shape, [0, 0], [], [], empty.trunc)
    c, mn = sparse_argmin(empty)
    assert np.isnan(c).all() and mn[0] == empty.trunc
    # ties go to the lowest flat cell, whatever the storage order; empty rows between full ones
    cells_ = np.array([7, 3, 9, 5, 2, 8, 1], dtype=np.int32)
    vals_ = np.array([0.5, 0.5, 0.7, 0.2, 0.9, 0.2, 0.1], dtype=np.float32)
    tie = SparseLossMaps((4, 5), [0, 3, 3, 6, 7], cells_, vals_, 5.0)
    c, mn = sparse_argmin(tie)
    np.testing.assert_array_equal(mn, np.array([0.5, 5.0, 0.2, 0.1], np.float32).astype(np.float64))
    np.testing.assert_array_equal(c[[0, 2, 3]], [[3, 0], [0, 1], [1, 0]])
    assert np.isnan(c[1]).all()


def test_dense_maps_cell_cap_and_stats_only():
    rng = np.random.default_rng(3)
    src = torch.as_tensor(rng.normal(size=(9, 4)), dtype=torch.float32)
    tgt = torch.as_tensor(rng.normal(size=(4, 6, 6)) * 0.1, dtype=torch.float32)
    full, st = dense_maps(src, tgt)
    capped, _ = dense_maps(src, tgt, max_cells_per_point=5)
    assert (capped.counts <= 5).all() and (capped.counts <= full.counts).all()
    none, st2 = dense_maps(src, tgt, sparse=False)
    assert none is None
    np.testing.assert_array_equal(st.argmax_xy, st2.argmax_xy)


def test_sparse_lookup_equals_dense_lookup():
    from nre.maps.dense import sparse_lookup

    rng = np.random.default_rng(4)
    logp = np.log(rng.dirichlet(np.full(30, 0.2), size=40)).reshape(40, 5, 6)
    m = sparse_from_logprob(logp, (1, 1))
    xy = np.c_[rng.uniform(-1.5, 6.5, 40), rng.uniform(-1.5, 5.5, 40)]  # includes the band and outside
    valid = rng.random(40) > 0.2
    ref = lookup_dense(m.to_dense(), np.arange(40), xy, valid, m.trunc)
    np.testing.assert_allclose(sparse_lookup(m, xy, valid), ref, rtol=1e-6)
    # cells stored out of order within a point give the same answer
    perm = m.subset(np.arange(40))
    for n in range(40):
        s, e = perm.offsets[n], perm.offsets[n + 1]
        perm.cells[s:e] = perm.cells[s:e][::-1].copy()
        perm.values[s:e] = perm.values[s:e][::-1].copy()
    np.testing.assert_allclose(sparse_lookup(perm, xy, valid), ref, rtol=1e-6)
    empty = SparseLossMaps((5, 6), np.zeros(3, int), [], [], 2.0)
    np.testing.assert_array_equal(sparse_lookup(empty, xy[:2]), [2.0, 2.0])


def _at_threads(n, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("tail", [2, 7])
def test_dense_maps_bits_do_not_depend_on_threads_or_where_chunks_end(tail):
    # The short last chunk once ran a product of another shape: BLAS then picks another kernel, whose bits
    # differ with the thread count (7 rows: 1 vs 2 threads) or from the full-chunk kernel (2 rows). Measured on
    # real pairs: --cores 1 changed map scores of 30 of 825 default pairs. Every point's map must be the same
    # bits whatever the thread count and wherever its chunk ends.
    g = torch.Generator().manual_seed(tail)
    n = 256 + tail
    src = torch.nn.functional.normalize(torch.randn(n, 128, generator=g), dim=1) * 8
    tgt = torch.randn(128, 30, 36, generator=g)

    def run(s):
        maps, st = dense_maps(s, tgt, 1.0, (8.0, 8.0))
        return maps.to_dense(), st

    ref_maps, ref = _at_threads(1, lambda: run(src))
    for threads in (2, 4):
        maps, st = _at_threads(threads, lambda: run(src))
        np.testing.assert_array_equal(maps, ref_maps)
        for f in ("argmax_xy", "score", "entropy"):
            np.testing.assert_array_equal(getattr(st, f), getattr(ref, f), err_msg=f"{f}, {threads} threads")
    # the last `tail` points moved to the first, full chunk: the same bits per point
    perm = np.r_[n - tail : n, 0 : n - tail]
    maps, st = _at_threads(1, lambda: run(src[torch.as_tensor(perm)]))
    np.testing.assert_array_equal(maps, ref_maps[perm])
    np.testing.assert_array_equal(st.score, ref.score[perm])
    np.testing.assert_array_equal(st.entropy, ref.entropy[perm])


def test_local_window_maps_bits_do_not_depend_on_threads_or_where_chunks_end():
    from nre.maps.local import descriptor_window_logprob

    g = torch.Generator().manual_seed(3)
    n, h, w, size = 2 * 256 + 9, 30, 36, 8
    src = torch.randn(n, 128, generator=g)
    tgt = torch.randn(128, h, w, generator=g)
    rng = np.random.default_rng(0)
    x0, y0 = rng.integers(0, w - size, n), rng.integers(0, h - size, n)
    # 256-row chunks (1080 cells): the last has 9 rows, a shape whose product once depended on the thread count
    ref = _at_threads(1, lambda: descriptor_window_logprob(src, tgt, x0, y0, size))
    for threads in (2, 4):
        out = _at_threads(threads, lambda: descriptor_window_logprob(src, tgt, x0, y0, size))
        np.testing.assert_array_equal(out, ref, err_msg=f"{threads} threads")
    perm = np.r_[n - 2 : n, 0 : n - 2]
    out = _at_threads(1, lambda: descriptor_window_logprob(src[torch.as_tensor(perm)], tgt, x0[perm], y0[perm], size))
    np.testing.assert_array_equal(out, ref[perm])
