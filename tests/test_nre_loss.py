import numpy as np
import torch

from nre.geometry import Camera, so3_exp
from nre.solver.loss import bilinear_weights, nre_cross_entropy, nre_loss, pose_nre


def _maps(rng, n, h, w):
    return torch.log_softmax(torch.as_tensor(rng.normal(size=(n, h * w)), dtype=torch.float64), -1)


def test_nre_equals_literal_cross_entropy_for_in_map_points():
    rng = np.random.default_rng(0)
    h, w = 6, 8
    logc = _maps(rng, 20, h, w)
    xy = torch.as_tensor(np.c_[rng.uniform(0, w - 1, 20), rng.uniform(0, h - 1, 20)])
    ce = nre_cross_entropy(logc, xy, shape=(h, w))
    # literal: the bilinear reprojection pmf r (Eq. 3) and the matching pmf C (Eq. 2, s = 1)
    for n in range(20):
        x, y = xy[n].tolist()
        r = np.zeros((h, w))
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        a, b = x - x0, y - y0
        for dx, dy, wt in ((0, 0, (1 - a) * (1 - b)), (1, 0, a * (1 - b)), (0, 1, (1 - a) * b), (1, 1, a * b)):
            if wt > 0:
                r[y0 + dy, x0 + dx] += wt
        lit = -(r.reshape(-1) * logc[n].numpy()).sum()
        assert abs(lit - ce[n].item()) < 1e-9
    # Eq. 4 with s = 1 is the same number; s = 0 gives ln|Omega-ring|
    valid = torch.ones(20, dtype=torch.bool)
    torch.testing.assert_close(nre_loss(logc, xy, valid, (h, w), 1.0), ce)
    torch.testing.assert_close(
        nre_loss(logc, xy, valid, (h, w), 0.0), torch.full((20,), np.log(h * w + 1.0), dtype=torch.float64)
    )


def test_out_of_map_and_behind_camera():
    rng = np.random.default_rng(1)
    h, w = 4, 5
    logc = _maps(rng, 3, h, w)
    xy = torch.tensor([[-0.5, 1.0], [2.0, 1.0], [10.0, 10.0]], dtype=torch.float64)
    valid = torch.tensor([True, False, True])
    plain = nre_loss(logc, xy, valid, (h, w), 1.0)
    assert torch.isinf(plain[0]) and torch.isinf(plain[1]) and torch.isinf(plain[2])
    robust = nre_loss(logc, xy, valid, (h, w), None)
    lo = np.log(h * w + 1)
    assert robust[1].item() == np.float64(lo) and robust[2].item() == lo
    # half the mass out: half ln|Omega| + half the (truncated) edge cell's loss
    edge = min(-logc[0, 1 * w + 0].item(), lo)
    assert abs(robust[0].item() - (0.5 * lo + 0.5 * edge)) < 1e-9


def test_gradcheck_pose_and_descriptors():
    rng = np.random.default_rng(2)
    cam = Camera("PINHOLE", 64, 48, [50, 50, 31.5, 23.5])
    K = torch.as_tensor(cam.K)
    R0 = torch.as_tensor(so3_exp(rng.normal(0, 0.1, 3)))
    X = torch.as_tensor(np.c_[rng.uniform(-1, 1, (10, 2)), rng.uniform(4, 6, 10)])
    h, w, D = 12, 16, 4
    src = torch.tensor(rng.normal(size=(10, D)), requires_grad=True)
    tgt = torch.tensor(rng.normal(size=(D, h * w)), requires_grad=True)
    omega = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.01, -0.02, 0.0], dtype=torch.float64, requires_grad=True)

    def f(omega, t, src, tgt):
        logc = torch.log_softmax(src @ tgt, -1)
        return pose_nre(X, omega, t, R0, K, logc, (h, w), (w / 64, h / 48), s=1.0)

    assert torch.isfinite(f(omega, t, src, tgt))
    # the pose exactly (6 inputs); the descriptors (808 inputs) by gradcheck's random-projection fast mode
    assert torch.autograd.gradcheck(lambda o, tt: f(o, tt, src.detach(), tgt.detach()), (omega, t), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(
        lambda a, b: f(omega.detach(), t.detach(), a, b), (src, tgt), eps=1e-6, atol=1e-5, fast_mode=True
    )
    # the robust form (Eq. 5) is differentiable too where no corner sits at the truncation kink
    g = torch.autograd.grad(pose_nre(X, omega, t, R0, K, torch.log_softmax(src @ tgt, -1), (h, w), (0.25, 0.25)), t)
    assert torch.isfinite(g[0]).all()


def test_nre_cross_entropy_for_feature_learning():
    """Eq. 10's per-point loss: (N, h, w) or (N, h*w) log-maps, invalid points +inf, gradient w.r.t. the maps."""
    rng = np.random.default_rng(3)
    h, w = 5, 6
    logits = torch.tensor(rng.normal(size=(4, h, w)), requires_grad=True)
    logc = torch.log_softmax(logits.reshape(4, -1), -1)
    xy = torch.tensor([[1.25, 2.5], [0.0, 0.0], [4.9, 3.1], [2.0, 2.0]], dtype=torch.float64)
    valid = torch.tensor([True, True, True, False])
    a = nre_cross_entropy(logc.reshape(4, h, w), xy, valid)
    b = nre_cross_entropy(logc, xy, valid, shape=(h, w))
    torch.testing.assert_close(a, b)
    assert torch.isinf(a[3]) and torch.isfinite(a[:3]).all()
    # at a cell centre it is exactly -ln C at that cell
    assert abs(a[1].item() + logc[1, 0].item()) < 1e-12
    a[:3].sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda z: nre_cross_entropy(torch.log_softmax(z, -1), xy[:3], shape=(h, w)),
        (torch.tensor(rng.normal(size=(3, h * w)), requires_grad=True),),
    )


def test_bilinear_weights_sum_to_one():
    xy = torch.tensor([[0.3, 0.7], [2.0, 1.0]], dtype=torch.float64)
    _, wts, inside = bilinear_weights(xy, 4, 4)
    torch.testing.assert_close(wts.sum(1), torch.ones(2, dtype=torch.float64))
    assert inside.all()
