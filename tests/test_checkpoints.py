"""Checkpoint loading without Lightning: random checkpoints generated from the committed manifests in the official
file layouts (Lightning dict with an AttributeDict, class-keyed callbacks, wrapper prefixes; S2DNet's dict), strict
key / shape matching with clear errors, files that are not checkpoints, legacy-format files with numpy metadata, and
crafted files that would run code (refused, nothing runs)."""

import pickle
import sys
import types

import numpy as np
import pytest
import torch

from nre.features.nets import nre_nets as N
from nre.features.nets import s2dnet as S
from nre.features.nets.checkpoints import (
    CheckpointError,
    random_state_dict,
    read_checkpoint,
    read_manifest,
    save_lightning_checkpoint,
    torch_load,
)


def _fake_lightning_save(path, obj):
    """torch.save with Lightning's AttributeDict and a callback class resolvable, as in a real Lightning file;
    the fake modules are removed afterwards so loading happens without them."""
    names = ["pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"]
    names += ["pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    mods = {n: types.ModuleType(n) for n in names}

    class AttributeDict(dict):
        pass

    class ModelCheckpoint:
        pass

    AttributeDict.__module__ = "pytorch_lightning.utilities.parsing"
    AttributeDict.__qualname__ = "AttributeDict"
    ModelCheckpoint.__module__ = "pytorch_lightning.callbacks.model_checkpoint"
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    mods["pytorch_lightning.utilities.parsing"].AttributeDict = AttributeDict
    mods["pytorch_lightning.callbacks.model_checkpoint"].ModelCheckpoint = ModelCheckpoint
    sys.modules.update(mods)
    try:
        obj = obj(AttributeDict, ModelCheckpoint)
        torch.save(obj, path)
    finally:
        for n in names:
            sys.modules.pop(n, None)
    return obj


def _lightning_file(path, manifest, hparams, class_keyed_callbacks=False, prefix=""):
    sd = random_state_dict(manifest, seed=3)

    def make(AttributeDict, ModelCheckpoint):
        obj = {
            "epoch": 12,
            "global_step": 3456,
            "pytorch-lightning_version": "1.2.4",
            "state_dict": {prefix + k: v for k, v in sd.items()},
            "hyper_parameters": AttributeDict(hparams),
            "hparams_name": "kwargs",
            "optimizer_states": [],
            "lr_schedulers": [],
        }
        obj["callbacks"] = {ModelCheckpoint: {"best_model_score": torch.tensor(1.0)}} if class_keyed_callbacks else {}
        return obj

    _fake_lightning_save(path, make)
    return sd


def test_official_fine_lightning_checkpoint_loads_strictly_without_lightning(tmp_path):
    assert "pytorch_lightning" not in sys.modules
    path = tmp_path / "fine.pth"
    sd = _lightning_file(path, read_manifest("nre_fine"), {"level": "fine", "extraction_layer": "Mixed_5d"})
    net = N.load_network(path, "fine", "official")
    for k, v in net.state_dict().items():
        assert torch.equal(v, sd[k]), k
    _, hp, obj = read_checkpoint(path)
    assert hp == {"level": "fine", "extraction_layer": "Mixed_5d"} and obj["global_step"] == 3456


def test_official_coarse_checkpoint_with_class_keyed_callbacks_and_prefix(tmp_path):
    """Old Lightning files key callbacks by class: weights-only loading refuses them, the restricted unpickler
    replaces the class by an inert stub. A ``model.`` wrapper prefix is removed."""
    path = tmp_path / "coarse.pth"
    man = read_manifest("nre_coarse")
    sd = _lightning_file(path, man, {"level": "coarse", "extraction_layer": "Mixed_7a"}, True, prefix="model.")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # the plain weights-only loader cannot read it
    net = N.load_network(path, "coarse", "official")
    assert torch.equal(net.state_dict()["cnn.16.weight"], sd["cnn.16.weight"])
    assert torch.equal(net.state_dict()["cnn.0.conv.weight"], sd["cnn.0.conv.weight"])
    # and it runs at stride 16 on a small image
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 64, 96)).shape == (1, 1280, 4, 6)


def test_strict_matching_lists_missing_unexpected_and_mismatched(tmp_path):
    man = read_manifest("nre_fine")
    sd = random_state_dict(man)
    del sd["cnn.0.conv.weight"]
    sd["cnn.99.weight"] = torch.zeros(1)
    sd["cnn.8.weight"] = torch.zeros(288, 288, 3, 3)
    path = tmp_path / "broken.pth"
    save_lightning_checkpoint(path, sd, {"level": "fine"})
    with pytest.raises(CheckpointError) as e:
        N.load_network(path, "fine", "official")
    msg = str(e.value)
    assert str(path) in msg and "cnn.0.conv.weight" in msg and "cnn.99.weight" in msg
    assert "cnn.8.weight: file (288, 288, 3, 3) vs model (288, 288, 1, 1)" in msg


def test_wrong_level_is_refused(tmp_path):
    path = tmp_path / "fine.pth"
    save_lightning_checkpoint(path, random_state_dict(read_manifest("nre_fine")), {"level": "fine"})
    with pytest.raises(CheckpointError, match="is a 'fine' network, expected 'coarse'"):
        N.load_network(path, "coarse", "official")
    # without hyper-parameters the strict key check refuses it
    save_lightning_checkpoint(path, random_state_dict(read_manifest("nre_fine")), {})
    with pytest.raises(CheckpointError, match="missing"):
        N.load_network(path, "coarse", "official")


def test_files_that_are_not_checkpoints(tmp_path):
    txt = tmp_path / "notes.pth"
    txt.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pth"):
        torch_load(txt)
    npz = tmp_path / "arrays.pth"
    with open(npz, "wb") as fh:
        np.savez(fh, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="arrays.pth"):
        read_checkpoint(npz)
    lst = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], lst)
    with pytest.raises(CheckpointError, match="expected a checkpoint dict"):
        read_checkpoint(lst)
    nosd = tmp_path / "nosd.pth"
    torch.save({"weights": torch.zeros(1)}, nosd)
    with pytest.raises(CheckpointError, match="no 'state_dict'"):
        read_checkpoint(nosd)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_checkpoint(tmp_path / "missing.pth")


def test_s2dnet_official_format(tmp_path):
    man = read_manifest("s2dnet")
    sd = random_state_dict(man, seed=5)
    path = tmp_path / "s2dnet_weights.pth"
    torch.save({"state_dict": sd, "hypercolumn_layers": ["conv1_2", "conv3_3", "conv5_3"]}, path)
    net = S.load_s2dnet(path)
    assert torch.equal(
        net.state_dict()["adaptation_layers.adap_layer_2.2.weight"], sd["adaptation_layers.adap_layer_2.2.weight"]
    )
    from nre.features import get_backend

    b = get_backend("s2dnet", weights=str(path), fine_layer="conv3_3")
    f = b.extract(np.zeros((32, 48, 3), np.uint8))
    assert f["coarse"].desc.shape == (128, 2, 3) and f["fine"].desc.shape == (128, 8, 12)
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": sd, "hypercolumn_layers": ["conv1_2", "conv4_3", "conv5_3"]}, bad)
    with pytest.raises(CheckpointError, match="adap_layer_1"):
        S.load_s2dnet(bad)


def test_our_checkpoints_use_the_same_loader(tmp_path):
    net = N.CompactFineNet(dim=32, width=8)
    hp = {"level": "fine", "arch": "compact", "dim": 32, "width": 8}
    path = tmp_path / "compact_fine.pth"
    save_lightning_checkpoint(path, net.state_dict(), hp, optimizer_states=[{"state": {}, "param_groups": []}])
    back = N.load_network(path, "fine", "compact")
    assert back.descriptor_dim == 32
    for k, v in net.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    torch.load(path, weights_only=True)  # plain dicts only


class _Call:
    """Pickles as a call of ``fn(*args)``: what a crafted checkpoint does to run code when it is unpickled."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _crafted(path, payload):
    sd = random_state_dict(read_manifest("nre_fine"), seed=1)
    torch.save({"state_dict": sd, "hyper_parameters": {"level": "fine", "x": payload}}, path)


@pytest.mark.parametrize("legacy", [False, True])
def test_crafted_checkpoints_are_refused_and_run_nothing(tmp_path, legacy):
    """A checkpoint whose unpickling calls numpy / os / builtins / torch functions is refused with an error naming
    the global, and nothing runs (no file appears). The old fallback unpickler admitted any numpy.* / torch.*
    callable: the numpy.save payload wrote its file."""
    import builtins
    import os

    marker = tmp_path / "pwned.npy"
    payloads = {
        "numpy.save": _Call(np.save, str(marker), np.zeros(2)),
        "system": _Call(os.system, f"touch {marker}"),
        "builtins.exec": _Call(builtins.exec, f"open({str(marker)!r}, 'w').write('x')"),
        "torch.save": _Call(torch.save, {"a": 1}, str(marker)),
        "subprocess.Popen": _Call(__import__("subprocess").Popen, ["touch", str(marker)]),
    }
    for name, payload in payloads.items():
        path = tmp_path / f"{name}.pth"
        sd = random_state_dict(read_manifest("nre_fine"), seed=1)
        obj = {"state_dict": sd, "hyper_parameters": {"level": "fine", "x": payload}}
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(CheckpointError, match=f"{path.name}: refused: .*{name.split('.')[-1]}"):
            N.load_network(path, "fine", "official")
        assert not marker.exists(), name
        assert "\n" not in str(pytest.raises(CheckpointError, torch_load, path).value)


def test_unknown_classes_become_inert_stubs(tmp_path):
    """A class outside the standard library, numpy and torch (e.g. a Lightning callback used as a dict key) is an
    inert stub: calling it records its arguments and runs nothing."""
    mod = types.ModuleType("pytorch_lightning_fake")

    class Callback:
        def __init__(self, *a):
            self.a = a

        def __reduce__(self):
            return Callback, self.a

    Callback.__module__, Callback.__qualname__ = "pytorch_lightning_fake", "Callback"
    mod.Callback = Callback
    sys.modules["pytorch_lightning_fake"] = mod
    marker = tmp_path / "pwned"
    try:
        _crafted(tmp_path / "c.pth", {Callback("touch", str(marker)): 1})
    finally:
        sys.modules.pop("pytorch_lightning_fake")
    _, hp, _ = read_checkpoint(tmp_path / "c.pth")
    (stub,) = hp["x"]
    assert repr(stub) == "<Stub pytorch_lightning_fake.Callback>" and stub.args == ("touch", str(marker))
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_numpy_metadata_and_legacy_format_load(tmp_path, legacy):
    """Old checkpoints (torch < 1.6 wrote the legacy format, e.g. S2DNet's) with numpy scalars, dtypes and arrays in
    their metadata load with weights-only loading; an object array is refused."""
    man = read_manifest("s2dnet")
    sd = random_state_dict(man, seed=2)
    meta = {
        "lr": np.float64(1e-4),
        "step": np.int64(7),
        "flag": np.bool_(True),
        "mean": np.array([[0.485, 0.456, 0.406]], np.float32),
        "fortran": np.asfortranarray(np.arange(6, dtype=">i4").reshape(2, 3)),
        "names": np.array(["conv1_2", "conv3_3"]),
        "dtype": np.dtype("f2"),
    }
    path = tmp_path / "s2dnet_weights.pth"
    obj = {"state_dict": sd, "hypercolumn_layers": ["conv1_2", "conv3_3", "conv5_3"], "meta": meta}
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    net = S.load_s2dnet(path)
    assert torch.equal(net.state_dict()["encoder.0.weight"], sd["encoder.0.weight"])
    back = torch_load(path)["meta"]
    for k, v in meta.items():
        assert type(back[k]) is type(v) and np.array_equal(back[k], v), k
    assert back["fortran"].dtype == np.dtype(">i4") and back["lr"] == 1e-4
    bad = tmp_path / "object.pth"
    torch.save({"state_dict": sd, "meta": np.array([{"a": 1}], dtype=object)}, bad)
    with pytest.raises(CheckpointError, match="object.pth"):
        torch_load(bad)
