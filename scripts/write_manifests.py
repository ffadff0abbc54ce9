"""(Re)generate the committed architecture manifests (nre/features/nets/manifests/*.json) from the code."""

import json
from pathlib import Path

from nre.features.nets import nre_nets, s2dnet
from nre.features.nets.checkpoints import MANIFEST_DIR, manifest_of


def write_manifests(out_dir: str | Path = MANIFEST_DIR) -> list[Path]:
    """(Re)generate the committed manifests from the architectures in nre_nets / s2dnet."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = {
        "nre_coarse": (nre_nets.official_coarse_net(), "NRE coarse.pth state_dict (Lightning Net.cnn, stride 16)"),
        "nre_fine": (nre_nets.official_fine_net(), "NRE fine.pth state_dict (Lightning Net.cnn, stride 2)"),
        "s2dnet": (s2dnet.S2DNet(), "s2dnet_weights.pth 'state_dict' (VGG16 encoder + 3 adaptation layers)"),
    }
    paths = []
    for name, (model, notes) in specs.items():
        p = out_dir / f"{name}.json"
        p.write_text(json.dumps(manifest_of(model, name, notes), indent=1) + "\n")
        paths.append(p)
    return paths


if __name__ == "__main__":
    for p in write_manifests():
        print(p)
