"""Data-aware approximation of a trained layer, and the model's accuracy right after surgery.

For one trained layer (the MNIST MLP's second hidden layer, 64 x 64; the CIFAR ResNet18's
layer3.0 shortcut, a strided 1x1 convolution, 64 x 32; the centre tap of that block's second 3x3
convolution, 64 x 64, the other eight taps kept) with its inputs recorded on the training images:
every family at each parameter budget (the configuration :mod:`structlayers.lab.approx` picks),
fitted with L-BFGS, each fit's convergence recorded, two ways from its first start (its Frobenius
projection where the family has one, else its seed-0 initialisation):

* ``frobenius``: minimise ``||W_hat - W||_F`` (the approximation lab's objective);
* ``data``: minimise ``||(W_hat - W) S||_F``, ``S = C^{1/2}``, ``C`` the inputs' second moment;

and the data fit also from ``--seeds`` random initialisations.

Each configuration's local dimension (the Jacobian rank of its dense weight, measured at its data fit
from the first start) is recorded beside its parameter count.  Baselines at the ranks whose exact
count ``r (m + n - r)`` fits the parameter count and the local dimension: the truncated SVD of ``W``
and the data-aware optimum ``[W S]_r S^+``.  After each fit the layer's weight is replaced by
``W_hat`` (no fine-tuning; bias and everything else unchanged) and the validation accuracy measured.
The checkpoints come from ``experiments/approx/targets/make_targets.sh``'s two training runs
(``runs/approx-targets``; their model weights are saved in ``experiments/approx/targets/models/``,
since retraining does not reproduce them bit for bit).  Resumable: runs already in ``--out`` are kept.
With ``--raise-cap``, a record made with a lower ``--steps`` goes on at the higher cap: its runs whose fits
all converged are kept (a deterministic L-BFGS fit that stopped before the old cap stops at the same point
under a higher one), the others are fitted again.  ``--shard K/N`` fits only every N-th configuration
(from the K-th) into its own ``--out``; ``--absorb`` takes the runs of such shards into one record.

    python experiments/approx/data_aware.py --target mnist_hidden --out experiments/approx/data_mnist_hidden.json
    python experiments/approx/data_aware.py --target cifar_shortcut --out experiments/approx/data_cifar_shortcut.json
    python experiments/approx/data_aware.py --target cifar_conv --out experiments/approx/data_cifar_conv.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from structlayers.lab.approx.baselines import local_dimension, svd_rank_for_budget
from structlayers.lab.approx.data_aware import Whitening, fit_data, relative_error, truncated_svd
from structlayers.lab.approx.experiment import ApproxConfig, Job, _projected, build_layer, plan
from structlayers.lab.approx.targets import Target
from structlayers.lab.data.datamodule import CIFAR10DataModule, DataConfig, ImageDataModule, MNISTDataModule
from structlayers.lab.models import build_model, load_weights
from structlayers.surgery.fit import FitOptions, FitResult, fit_layer

FAMILIES = ("acdc,afdf,afdf:cascade=complex,monarch,butterfly,kronecker,lowrank,lowrank_diag,circulant,toeplitz,"
            "blockdiag")


@dataclass(frozen=True)
class Setup:
    """A trained model, the layer replaced, how its input is recorded and how surgery sets it."""

    run: str
    model: str
    options: dict[str, int]
    data: Callable[[], ImageDataModule]
    budgets: tuple[int, ...]

    def layer_input(self, model: nn.Module, images: Tensor) -> Tensor:
        """The replaced layer's input for ``images``, one row per sample (a pixel for a convolution)."""
        raise NotImplementedError

    def tail(self, model: nn.Module, x: Tensor) -> Tensor:
        """Logits from the cached input ``x`` of the replaced layer's block."""
        raise NotImplementedError

    def cache(self, model: nn.Module, images: Tensor) -> Tensor:
        raise NotImplementedError

    def weight(self, model: nn.Module) -> nn.Parameter:
        raise NotImplementedError

    def matrix(self, weight: Tensor) -> Tensor:
        """The ``out x in`` matrix replaced, out of the layer's ``weight``."""
        return weight.reshape(weight.shape[0], weight.shape[1])

    def with_matrix(self, weight: Tensor, matrix: Tensor) -> Tensor:
        """``weight`` with its replaced matrix set to ``matrix``."""
        return matrix.reshape(weight.shape).to(weight.dtype)


class MNISTHidden(Setup):
    def cache(self, model: nn.Module, images: Tensor) -> Tensor:
        return model.relu(model.fc1(images.flatten(1)))

    def layer_input(self, model: nn.Module, images: Tensor) -> Tensor:
        return self.cache(model, images)

    def tail(self, model: nn.Module, x: Tensor) -> Tensor:
        return model.fc2(model.relu(model.hidden[0](x)))

    def weight(self, model: nn.Module) -> nn.Parameter:
        return model.hidden[0].weight


class CIFARShortcut(Setup):
    def cache(self, model: nn.Module, images: Tensor) -> Tensor:
        return model.layer2(model.layer1(model.relu(model.bn1(model.conv1(images)))))

    def layer_input(self, model: nn.Module, images: Tensor) -> Tensor:
        x = self.cache(model, images)[:, :, ::2, ::2]     # the 1x1 convolution's stride-2 taps
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])

    def tail(self, model: nn.Module, x: Tensor) -> Tensor:
        return model.fc(model.pool(model.layer4(model.layer3(x))).flatten(1))

    def weight(self, model: nn.Module) -> nn.Parameter:
        return model.layer3[0].shortcut[0].weight


class CIFARConvCentre(CIFARShortcut):
    """The centre tap of layer3.0.conv2: it multiplies the input at the output's own pixel, so its
    inputs are that convolution's input at every pixel, and its error in the block's output is
    exactly the data error; the eight other taps stay as trained."""

    def layer_input(self, model: nn.Module, images: Tensor) -> Tensor:
        block = model.layer3[0]
        x = block.relu(block.bn1(block.conv1(self.cache(model, images))))
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])

    def weight(self, model: nn.Module) -> nn.Parameter:
        return model.layer3[0].conv2.weight

    def matrix(self, weight: Tensor) -> Tensor:
        return weight[:, :, 1, 1]

    def with_matrix(self, weight: Tensor, matrix: Tensor) -> Tensor:
        full = weight.clone()
        full[:, :, 1, 1] = matrix.to(weight.dtype)
        return full


def _cifar() -> ImageDataModule:
    return CIFAR10DataModule(DataConfig(data_dir="../shared/data/cifar10/cifar10_subset.npz"))


SETUPS: dict[str, Setup] = {
    "mnist_hidden": MNISTHidden("mnist-mlp", "mnist-mlp", {"hidden": 64, "hidden_layers": 2},
                                lambda: MNISTDataModule(DataConfig()), (256, 512, 1024, 2048)),
    "cifar_shortcut": CIFARShortcut("cifar-resnet18", "resnet18", {"width": 16}, _cifar, (256, 512)),
    "cifar_conv": CIFARConvCentre("cifar-resnet18", "resnet18", {"width": 16}, _cifar, (256, 512, 1024, 2048)),
}


def batched(fn: Callable[[Tensor], Tensor], x: Tensor, size: int = 500) -> Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


def fit_record(fit: FitResult) -> dict[str, object]:
    return {"converged": fit.converged, "steps": fit.steps, "grad_norm": fit.grad_norm, "seconds": fit.seconds,
            "message": fit.message}


def raise_cap(record: dict, steps: int) -> dict:
    """``record`` (fitted at a lower step cap) as the start of one at ``steps``: its runs whose fits all
    converged, the others left to fit; a configuration whose first start is refitted loses its local
    dimension, measured again at the new fit."""
    kept = [r for r in record["runs"] if all(r[k]["converged"] for k in ("frobenius", "data") if k in r)]
    refit = {r["label"] for r in record["runs"] if r not in kept and "frobenius" in r}
    command = record["command"].replace(f"--steps {record['steps_cap']}", f"--steps {steps}")
    return {**record, "command": command, "steps_cap": steps, "runs": kept, "complete": False,
            "dimensions": {k: v for k, v in record["dimensions"].items() if k not in refit},
            "raised_from": {"steps_cap": record["steps_cap"], "kept": len(kept),
                            "refitted": len(record["runs"]) - len(kept)}}


def shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)``, ``0 <= K < N``."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"a shard is K/N with 0 <= K < N, got {text!r}")
    return int(index), int(count)


def absorb(record: dict, other: dict, path: Path) -> None:
    """Add to ``record`` the runs (and their local dimensions and baselines) of ``other``, a record of
    the same study, e.g. another shard."""
    same = ("format", "target", "layer_shape", "checkpoint", "steps_cap", "families")
    if any(record[k] != other[k] for k in same):
        raise SystemExit(f"{path} is not a record of the same study ({', '.join(same)} must agree)")
    keys = {(r["label"], r["start"], r["seed"]) for r in record["runs"]}
    record["runs"] += [r for r in other["runs"] if (r["label"], r["start"], r["seed"]) not in keys]
    record["dimensions"] = {**other["dimensions"], **record["dimensions"]}
    record["baselines"] = {**other["baselines"], **record["baselines"]}
    record.setdefault("invocations", []).extend(i for i in other.get("invocations", [])
                                                if i not in record.get("invocations", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=sorted(SETUPS), required=True)
    parser.add_argument("--runs", type=Path, default=Path("runs/approx-targets"))
    parser.add_argument("--weights", type=Path, default=None,
                        help="the model's weights (default: the run's last.ckpt under --runs; the recorded runs' "
                             "weights are saved in experiments/approx/targets/models/)")
    parser.add_argument("--seeds", type=int, default=3, help="random starts, beside the projection")
    parser.add_argument("--steps", type=int, default=2000, help="L-BFGS iteration cap of every fit")
    parser.add_argument("--minutes", type=float, default=9.0, help="stop (resumably) after this long")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--raise-cap", action="store_true",
                        help="--out was recorded at a lower --steps: keep its converged runs, refit the rest")
    parser.add_argument("--shard", type=shard, default=(0, 1), metavar="K/N",
                        help="fit only the configurations whose index is K modulo N (its record is a part)")
    parser.add_argument("--absorb", type=Path, nargs="+", default=[],
                        help="records of the same study (shards) whose runs --out takes before it fits")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.monotonic()
    setup = SETUPS[args.target]
    model = build_model(setup.model, **setup.options)
    load_weights(model, args.weights or args.runs / setup.run / "checkpoints" / "last.ckpt")
    model.eval()
    data = setup.data()
    splits = data.load()
    train = data.normalize(torch.from_numpy(splits.train_images))
    val = data.normalize(torch.from_numpy(splits.val_images))
    labels = torch.from_numpy(splits.val_labels)
    inputs = batched(lambda x: setup.layer_input(model, x), train).double()
    whitening = Whitening.from_inputs(inputs)
    cached = batched(lambda x: setup.cache(model, x), val)
    param = setup.weight(model)
    original = param.detach().clone()
    w = setup.matrix(original).double()
    shape = (int(w.shape[0]), int(w.shape[1]))

    def accuracy(w_hat: Tensor) -> float:
        with torch.no_grad():
            param.copy_(setup.with_matrix(original, w_hat))
            logits = batched(lambda x: setup.tail(model, x), cached)
            param.copy_(original)
        return float((logits.argmax(1) == labels).double().mean())

    def scores(w_hat: Tensor) -> dict[str, float]:
        return {"frobenius_error": relative_error(w_hat, w), "data_error": relative_error(w_hat, w, whitening),
                "accuracy": accuracy(w_hat)}

    command = (f"python experiments/approx/data_aware.py --target {args.target} --seeds {args.seeds} "
               f"--steps {args.steps} --out {args.out}" + (f" --weights {args.weights}" if args.weights else ""))
    record = json.loads(args.out.read_text()) if args.out.exists() else {
        "command": command, "format": 2,
        "target": args.target, "layer_shape": list(shape), "checkpoint": str(args.weights or args.runs / setup.run),
        "data": splits.describe(), "input_samples": whitening.samples,
        "input_moment_rank": whitening.effective_rank, "families": FAMILIES, "budgets": list(setup.budgets),
        "seeds": list(range(args.seeds)), "optimizer": "lbfgs", "steps_cap": args.steps,
        "dense": {"accuracy": accuracy(w)}, "baselines": {}, "dimensions": {}, "runs": [], "complete": False,
        "machine": {"threads": 1, "cores": os.cpu_count(), "torch": torch.__version__}}
    if args.raise_cap and record["steps_cap"] < args.steps:
        record = raise_cap(record, args.steps)
    if record.get("format") != 2 or record["steps_cap"] != args.steps:
        raise SystemExit(f"{args.out} was recorded with other settings ({record['command']}); give a new --out")
    for path in args.absorb:
        absorb(record, json.loads(path.read_text()), path)
    record["seeds"] = list(range(max(args.seeds, len(record["seeds"]))))  # --seeds 0 first: every first start
    record["budgets"] = sorted(set(record["budgets"]) | set(setup.budgets))  # a budget added later: its runs too
    record.setdefault("invocations", []).append(f"{command} --minutes {args.minutes}")
    config = ApproxConfig(layers=FAMILIES, budgets=setup.budgets, shuffle="random", n=max(shape))
    jobs, skipped = plan(config, shape)
    record["skipped"] = skipped
    fit = FitOptions(steps=args.steps)
    target = Target(args.target, w, args.target)

    def baseline(charged: int) -> int:
        rank = svd_rank_for_budget(charged, *shape)
        if str(rank) not in record["baselines"]:
            record["baselines"][str(rank)] = {"svd": scores(truncated_svd(w, rank)),
                                              "data_svd": scores(truncated_svd(w, rank, whitening))}
        return rank

    def starts(job: Job) -> list[tuple[str, int]]:
        """``(start, seed)``: the projection (seed 0's layer: a stack's shuffles) where there is one, then
        the random initialisations."""
        has_projection = _projected(build_layer(job, shape, 0), target) is not None
        return [("projection", 0)] * has_projection + [("random", seed) for seed in range(args.seeds)]

    # Every configuration's first start before any further one, so that a stopped record is complete per start.
    todo = sorted(((i, job, start, seed) for job in jobs for i, (start, seed) in enumerate(starts(job))),
                  key=lambda t: t[0])
    index, shards = args.shard
    mine = {job.label for k, job in enumerate(jobs) if k % shards == index}
    done = {(r["label"], r["start"], r["seed"]) for r in record["runs"]}
    order = {(job.label, start, seed): k for k, (_, job, start, seed) in enumerate(todo)}

    def save() -> None:
        record["runs"].sort(key=lambda r: order[(r["label"], r["start"], r["seed"])])  # refitted runs in place
        args.out.write_text(json.dumps(record, indent=1) + "\n")

    stopped = False
    for i, job, start, seed in todo:
        if (job.label, start, seed) in done or job.label not in mine:
            continue
        if time.monotonic() - started > 60 * args.minutes:
            stopped = True
            break
        run: dict[str, object] = {"label": job.label, "family": job.label.split(" ")[0], "budget": job.budget,
                                  "start": start, "seed": seed}
        for objective in ("frobenius", "data") if i == 0 else ("data",):
            layer = build_layer(job, shape, seed)
            if start == "projection":
                _projected(layer, target)
            result = (fit_layer(layer, w, fit=fit) if objective == "frobenius"
                      else fit_data(layer, w, whitening, fit))
            run["params"] = layer.params()
            run[objective] = {**scores(layer.to_dense()[0]), **fit_record(result)}
        if job.label not in record["dimensions"]:  # the data fit of the configuration's first start
            record["dimensions"][job.label] = local_dimension(layer)
        run["svd_rank"] = baseline(int(run["params"]))
        run["dimension_rank"] = baseline(record["dimensions"][job.label])
        record["runs"].append(run)
        base = record["baselines"][str(run["svd_rank"])]["data_svd"]
        print(f"{job.label:32s} {start} {seed}: data error of the data fit {run['data']['data_error']:.3f} "
              f"({run['data']['steps']} steps), data SVD {base['data_error']:.3f}; accuracy "
              f"{run['data']['accuracy']:.4f}; {time.monotonic() - started:.0f} s", flush=True)
        save()
    done = {(r["label"], r["start"], r["seed"]) for r in record["runs"]}
    record["complete"] = (not stopped and shards == 1
                          and all((job.label, start, seed) in done for _, job, start, seed in todo))
    save()
    print(f"{len(record['runs'])} runs; complete: {record['complete']}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
