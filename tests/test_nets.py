"""NRE networks and S2DNet: the paper's architectures (output strides on a real image size, channel counts, the
committed manifests), the compact networks, the backends and the one image <-> map transform under resizing."""

import numpy as np
import pytest
import torch

from nre.features import get_backend
from nre.features.nets import nre_nets as N
from nre.features.nets import s2dnet as S
from nre.features.nets.checkpoints import manifest_of, read_manifest
from nre.geometry import img_to_map, map_to_img

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_official_strides_on_a_real_image_size():
    """640 x 480 -> coarse 40 x 30 x 1280 (stride 16, not torchvision's 32) and fine 320 x 240 x 288 (stride 2)."""
    x = torch.randn(1, 3, 480, 640)
    with torch.no_grad():
        c = N.official_coarse_net().eval()(x)
        f = N.official_fine_net().eval()(x)
    assert tuple(c.shape) == (1, 1280, 30, 40)
    assert tuple(f.shape) == (1, 288, 240, 320)


def test_official_architecture_facts_and_manifests():
    coarse, fine = N.official_coarse_net(), N.official_fine_net()
    for net, name in ((coarse, "nre_coarse"), (fine, "nre_fine"), (S.S2DNet(), "s2dnet")):
        assert manifest_of(net, name)["tensors"] == read_manifest(name)["tensors"]
    sc, sf = coarse.state_dict(), fine.state_dict()
    # facts: Mixed_7a at index 15 (two stem max-pools), 1x1 head conv 1280 -> 1280 without bias, then BatchNorm
    assert tuple(sc["cnn.15.branch3x3_2.conv.weight"].shape) == (320, 192, 3, 3)
    assert tuple(sc["cnn.15.branch7x7x3_4.conv.weight"].shape) == (192, 192, 3, 3)
    assert tuple(sc["cnn.16.weight"].shape) == (1280, 1280, 1, 1) and "cnn.16.bias" not in sc
    assert tuple(sc["cnn.17.running_var"].shape) == (1280,)
    assert tuple(sc["cnn.10.branch3x3.conv.weight"].shape) == (384, 288, 3, 3)  # Mixed_6a
    # fine: no max-pools, Conv2d_3b is 3x3, Mixed_5d last, 288-D head
    assert tuple(sf["cnn.3.conv.weight"].shape) == (80, 64, 3, 3)
    assert tuple(sf["cnn.7.branch_pool.conv.weight"].shape) == (64, 288, 1, 1)
    assert tuple(sf["cnn.8.weight"].shape) == (288, 288, 1, 1)
    assert not any(k.startswith("cnn.10") for k in sf)
    convs = [m for m in coarse.modules() if isinstance(m, N.BasicConv2d)]
    assert all(m.conv.bias is None and m.bn.eps == 1e-3 for m in convs)
    # the stride-1 Mixed_7a with padding 1, and the coarse Mixed_6a padded by 1
    m7 = coarse.cnn[15]
    assert m7.branch3x3_2.conv.stride == (1, 1) and m7.branch3x3_2.conv.padding == (1, 1)
    assert coarse.cnn[10].branch3x3.conv.padding == (1, 1)


def test_mixed_7a_pool_branch_passes_the_input_through():
    m = N.InceptionD(768, coarse=True).eval()
    x = torch.randn(1, 768, 5, 6)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (1, 1280, 5, 6)
    assert torch.equal(y[:, 512:], x)


def test_compact_nets_strides_and_dims():
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        c = N.CompactCoarseNet().eval()(x)
        f = N.CompactFineNet().eval()(x)
    assert tuple(c.shape) == (1, 128, 6, 8)
    assert tuple(f.shape) == (1, 64, 48, 64)
    # descriptors are normalised x learned scale: all of one norm
    norms = c.norm(dim=1)
    assert torch.allclose(norms, norms.flatten()[0].expand_as(norms), rtol=1e-4)


def test_s2dnet_hypercolumn_strides_and_rectification():
    net = S.S2DNet().eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = net(x)
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            "conv1_2": (1, 128, 64, 96),
            "conv3_3": (1, 128, 16, 24),
            "conv5_3": (1, 128, 4, 6),
        }
        # conv1_2 goes to its adaptation layer rectified (the release's in-place ReLU), conv5_3 unrectified
        h = net.encoder[2](torch.relu(net.encoder[0](x)))
        assert torch.allclose(out["conv1_2"], net.adaptation_layers.adap_layer_0(torch.relu(h)), atol=1e-5)
        z = x
        for layer in net.encoder:
            z = layer(z)
        assert torch.allclose(out["conv5_3"], net.adaptation_layers.adap_layer_2(z), atol=1e-5)


def test_backends_levels_scales_and_options():
    img = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    b = get_backend("nre_compact", coarse_weights=None, fine_weights=None, random_init=True)
    f = b.extract(img)  # the default coarse level: the stride-16 network on the 2x image
    assert f["coarse"].desc.shape == (128, 12, 16) and np.allclose(f["coarse"].scale, 1 / 8)
    assert f["fine"].desc.shape == (64, 48, 64) and np.allclose(f["fine"].scale, 1 / 2)
    assert b.temperature == 1.0 and "sha256" in b.options()
    s = get_backend("s2dnet", random_init=True, fine_layer="conv3_3").extract(img)
    assert s["fine"].desc.shape == (128, 24, 32) and np.allclose(s["fine"].scale, 1 / 4)
    with pytest.raises(ValueError, match="coarse_weights: no checkpoint given"):
        get_backend("nre_official")
    with pytest.raises(ValueError, match="not a hypercolumn layer"):
        get_backend("s2dnet", random_init=True, coarse_layer="conv4_3")


def test_coarse_stride_8_from_a_stride_16_network():
    """``coarse_stride=8``: "features" mode = the stride-16 descriptor map sampled bilinearly at the pixel centre of
    every cell of the stride-8 grid (the one image <-> map transform); "image" mode = the network on the image
    upsampled 2x (the default). The option is part of the cache identity only when it is not the architecture's
    stride."""
    img = (np.random.default_rng(2).random((96, 128, 3)) * 255).astype(np.uint8)
    kw = {"coarse_weights": None, "fine_weights": None, "random_init": True}
    b16 = get_backend("nre_compact", coarse_stride=16, **kw)
    b8 = get_backend("nre_compact", coarse_stride=8, coarse_stride_mode="features", **kw)
    f16, f8 = b16.extract(img, ("coarse",))["coarse"], b8.extract(img, ("coarse",))["coarse"]
    assert f8.desc.shape == (128, 12, 16) and np.allclose(f8.scale, 1 / 8)
    ys, xs = np.mgrid[0:12, 0:16]
    centres = map_to_img(np.c_[xs.ravel(), ys.ravel()].astype(float), f8.scale)
    assert torch.allclose(f16.sample(centres), f8.desc.reshape(128, -1).T, atol=1e-5)
    assert torch.allclose(b8.extract(img, ("fine",))["fine"].desc, b16.extract(img, ("fine",))["fine"].desc)
    fi = get_backend("nre_compact", coarse_stride=8, coarse_stride_mode="image", **kw).extract(img, ("coarse",))
    x2 = torch.nn.functional.interpolate(N.image_tensor(img), scale_factor=2, mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(fi["coarse"].desc, b16.nets["coarse"](x2)[0], atol=1e-5)
    assert np.allclose(fi["coarse"].scale, 1 / 8)
    assert "coarse_stride" not in b16.options() and b8.options()["coarse_stride"] == 8
    with pytest.raises(ValueError, match="coarse_stride must be 16 / k"):
        get_backend("nre_compact", coarse_stride=12, **kw)
    with pytest.raises(ValueError, match="coarse_stride_mode"):
        get_backend("nre_compact", coarse_stride=8, coarse_stride_mode="pixels", **kw)


def test_resize_keeps_the_one_image_to_map_transform():
    """With max_size the scale is w.r.t. the original image: sampling at an original pixel equals sampling the
    features of the resized image at that pixel's resized position."""
    rng = np.random.default_rng(1)
    img = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    b = get_backend("nre_compact", coarse_weights=None, fine_weights=None, random_init=True, fine_max_size=80)
    f = b.extract(img, ("fine",))["fine"]
    assert f.desc.shape[1:] == (30, 40) and f.image_size == (160, 120)
    small = N.image_tensor(img, 80)
    assert small.shape[-2:] == (60, 80)
    with torch.no_grad():
        d_small = b.nets["fine"](small)[0]
    xy = rng.uniform([0, 0], [159, 119], size=(20, 2))
    xy_small = img_to_map(xy, 80 / 160)  # resized image pixels (pixel centres at integers)
    map_xy = img_to_map(xy_small, 40 / 80)
    assert np.allclose(map_xy, img_to_map(xy, f.scale))
    ref = torch.nn.functional.grid_sample(
        d_small[None],
        torch.as_tensor(np.stack([map_xy[:, 0] / 39 * 2 - 1, map_xy[:, 1] / 29 * 2 - 1], -1), dtype=torch.float32)[
            None, None
        ],
        align_corners=True,
        padding_mode="border",
    )[0, :, 0].T
    assert torch.allclose(f.sample(xy), ref, atol=1e-5)
