"""Copy trained weight matrices out of the checkpoints that make_targets.sh writes.

mnist_mlp.pt:      hidden  (64 x 64)  the MLP's second layer, 784 -> 64 -> [64 -> 64] -> 10
cifar_resnet18.pt: conv     (64 x 64)  layer3.0.conv2, the centre tap of its 3x3 kernel (the channel
                                       mixing at the kernel's centre pixel)
                   shortcut (64 x 32)  layer3.0.shortcut, the strided 1x1 convolution
Each file also records the run's validation accuracy ("val_acc") and where the weight came from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return {key.removeprefix("model."): value for key, value in state.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("runs/approx-targets"))
    parser.add_argument("--out", type=Path, default=Path("experiments/approx/targets"))
    args = parser.parse_args()
    picks = {
        "mnist_mlp.pt": ("mnist-mlp", {"hidden": ("hidden.0.weight", None)}),
        "cifar_resnet18.pt": ("cifar-resnet18", {"conv": ("layer3.0.conv2.weight", (1, 1)),
                                                 "shortcut": ("layer3.0.shortcut.0.weight", (0, 0))}),
    }
    for filename, (run, entries) in picks.items():
        state = weights(args.runs / run / "checkpoints" / "last.ckpt")
        metrics = json.loads((args.runs / run / "metrics.json").read_text())
        out: dict[str, object] = {}
        for name, (key, tap) in entries.items():
            w = state[key]
            out[name] = (w[:, :, tap[0], tap[1]] if tap is not None else w).detach().clone().contiguous()
            out[f"{name}_source"] = f"{run}: {key}" + (f"[:, :, {tap[0]}, {tap[1]}]" if tap is not None else "")
        out["val_acc"] = float(metrics["val_acc"])
        torch.save(out, args.out / filename)
        shapes = {k: tuple(v.shape) for k, v in out.items() if isinstance(v, torch.Tensor)}
        print(f"{args.out / filename}: {shapes}, val_acc {out['val_acc']:.4f}")


if __name__ == "__main__":
    main()
