"""Figures that do not mislead: curves on integer epochs under a title naming the run, bench
legends naming the stack's depth and factor, "1 thread" in the singular (issue 23)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from matplotlib.figure import Figure

from structlayers import LayerSpec
from structlayers.lab.approx.plot import _label
from structlayers.lab.bench.harness import BenchConfig, BenchResult, BenchRow
from structlayers.lab.bench.machine import Machine, cpu_name
from structlayers.lightning.curves import plot_curves, run_title


@pytest.fixture
def saved(monkeypatch) -> list[Figure]:
    """The figures saved while the test runs, drawn (ticks and labels final)."""
    figures: list[Figure] = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        original(self, *args, **kwargs)
        figures.append(self)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def visible_xticks(ax) -> list[float]:
    low, high = sorted(ax.get_xlim())
    return [t for t in ax.get_xticks() if low <= t <= high]


def lightning_csv(path, epochs: int) -> None:
    """A CSVLogger ``metrics.csv``: step rows, then per epoch a validation row and a training row."""
    lines = ["epoch,step,train/loss_step,train/loss_epoch,train/acc,val/loss,val/acc"]
    for e in range(epochs):
        lines += [f"{e},{10 * e + 5},0.9,,,,", f"{e},{10 * e + 9},,,,{1 / (e + 2)},{0.5 + e / 10}",
                  f"{e},{10 * e + 9},,{1 / (e + 1)},{0.4 + e / 10},,"]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("epochs", [1, 3, 7])
def test_curves_integer_epochs_and_run_title(tmp_path, saved, epochs):
    csv = tmp_path / "metrics.csv"
    lightning_csv(csv, epochs)
    title = run_title("cifar10", "resnet18 all-acdc12", seed=0)
    plot_curves(csv, tmp_path / "curves.png", title=title)
    (fig,) = saved
    assert "cifar10 resnet18 all-acdc12 (seed 0)" in fig.get_suptitle()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert {ax.get_title() for ax in axes} == {"loss", "acc"}
    for ax in axes:
        ticks = visible_xticks(ax)
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert all("." not in label.get_text() for label in ax.get_xticklabels())


def test_many_metrics_wrap_into_rows(tmp_path, saved):
    metrics = [f"m{i}" for i in range(9)]
    header = "epoch,step," + ",".join(f"val/{m}" for m in metrics)
    (tmp_path / "metrics.csv").write_text(f"{header}\n0,3,{','.join('1' for _ in metrics)}\n")
    plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png", title="t")
    (fig,) = saved
    width, height = fig.get_size_inches()
    assert width < 20 and height > 7  # 4 panels to a row, three rows


def test_lab_run_title_names_the_run():
    from structlayers.lab.training.run import ModelConfig, TrainConfig

    model = ModelConfig(name="resnet18", layer=LayerSpec("acdc", 12), replace=True, targets=["pointwise"])
    title = TrainConfig(task="cifar10", model=model, seed=3, out_dir="runs/all-acdc12").title()
    assert title.startswith("cifar10 all-acdc12") and "acdc x12 in pointwise" in title and "(seed 3)" in title
    assert "dense" in TrainConfig(task="cifar10", model=ModelConfig(name="resnet18")).title()


def bench_result(threads: int) -> BenchResult:
    config = BenchConfig(layers=("acdc", "stack"), sizes=(256, 1024), depth=16, collapse=False)
    rows = [BenchRow(layer, size, 128, mode, 1.0, 0.1, 2.0, 2.0, 1.0, 0.5, samples=(1e-3, 1.1e-3))
            for layer in (*config.names, "nn.Linear") for size in config.sizes for mode in ("fwd", "fwd+bwd")]
    return BenchResult(config, Machine(cpu_name(threads), 1e10, 1e11), rows, {"threads": threads})


def test_bench_legend_and_title(tmp_path, saved):
    bench_result(1).plot(str(tmp_path / "bench.png"))
    (fig,) = saved
    for ax in fig.axes:
        assert "stack (16 x acdc)" in [t.get_text() for t in ax.get_legend().get_texts()]
        assert "cpu (1 thread)" in ax.get_title() and "threads" not in ax.get_title()
    assert cpu_name(2) == "cpu (2 threads)"


def test_bench_record_round_trips_and_fixes_old_thread_wording():
    result = bench_result(1)
    text = result.to_json().replace("cpu (1 thread)", "cpu (1 threads)")  # as older records wrote it
    again = BenchResult.from_json(text)
    assert again.machine.device == "cpu (1 thread)"
    assert again.config == result.config
    assert [r.samples for r in again.rows] == [r.samples for r in result.rows]
    assert all(math.isnan(r.collapsed_ms) for r in again.rows)


def test_approx_legend_names_the_depths():
    rows = [SimpleNamespace(config=c) for c in ("acdc K=2 random", "acdc K=4 random", "acdc K=32 random")]
    assert _label("acdc (random)", rows) == "acdc (random), K = 2-32"
    assert _label("acdc (-)", [SimpleNamespace(config="acdc K=1")]) == "acdc, K = 1"
    assert _label("monarch", [SimpleNamespace(config="monarch b=1 r=1")]) == "monarch"


def test_legacy_acdc_record_is_drawn_under_its_run_name(tmp_path, saved):
    path = Path(__file__).resolve().parents[2] / "experiments" / "figures.py"
    spec = importlib.util.spec_from_file_location("figures", path)
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    record = {"config": {"layer": "acdc", "n": 8, "shuffle": "riffle", "seeds": [0, 1], "optimizer": "adam",
                         "steps": 10},
              "rows": [{"depth": k, "params": 16 * k, "rel_error_mean": 1 / k, "rel_error_std": 0.01,
                        "svd_rel_error": 0.5 / k} for k in (1, 2, 4)]}
    png = tmp_path / "acdc_n8_riffle.png"
    figures.plot_legacy_acdc(record, png)
    assert png.exists()
    ax = saved[-1].axes[0]
    assert "acdc_n8_riffle" in ax.get_title() and "seeds 0-1" in ax.get_title()
    assert any("K = 1-4" in t.get_text() for t in ax.get_legend().get_texts())
