import json

import pytest
import torch

import structlayers
from structlayers.cli import main
from structlayers.lab.approx import ApproxConfig, gaussian_target, run_approx, svd_error
from structlayers.lab.approx.experiment import svd_rank_for_budget
from structlayers.surgery import fit_layer


def test_fit_recovers_a_realisable_target() -> None:
    torch.manual_seed(3)
    teacher = structlayers.create("lowrank", 12, 10, rank=3).double()
    weight, bias = teacher.to_dense()
    student = structlayers.create("lowrank", 12, 10, rank=3).double()
    result = fit_layer(student, weight, bias, steps=300, optimizer="lbfgs")
    assert result.relative_error < 1e-3
    assert result.output_mse < 1e-6
    assert result.history[-1] < result.history[0]


def test_fit_reduces_error_for_acdc_and_reports_consistent_metrics() -> None:
    layer = structlayers.create("acdc", 16, 16).double()
    target = gaussian_target(16, seed=1)
    result = fit_layer(layer, target, steps=200, lr=3e-2)
    initial = float(torch.linalg.norm(torch.eye(16, dtype=torch.float64) - target) / torch.linalg.norm(target))
    assert result.relative_error < 0.9 * initial
    weight, _ = layer.to_dense()
    assert result.relative_error == pytest.approx(
        float(torch.linalg.norm(weight - target) / torch.linalg.norm(target)), rel=1e-9
    )
    # E||x (W - W_hat)^T||^2 / out = ||W - W_hat||_F^2 / out for x ~ N(0, I) (bias is zero here).
    expected_mse = float(torch.linalg.norm(weight - target) ** 2) / 16
    assert result.output_mse == pytest.approx(expected_mse, rel=0.15)


def test_fit_rejects_wrong_target_shape() -> None:
    with pytest.raises(ValueError, match=r"expected \(4, 8\)"):
        fit_layer(structlayers.create("acdc", 8, 4), torch.randn(8, 4))


def test_svd_baseline() -> None:
    target = gaussian_target(20, seed=0)
    errors = [svd_error(target, r) for r in range(0, 21)]
    assert errors[0] == pytest.approx(1.0) and errors[-1] == 0.0
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert svd_rank_for_budget(2 * 64, 64) == 1 and svd_rank_for_budget(100, 64) == 0


def test_run_approx_rows_and_json() -> None:
    config = ApproxConfig(layer="acdc", n=16, depths=(1, 2), seeds=(0, 1), steps=30)
    result = run_approx(config, progress=False)
    rows = result.rows()
    assert [r.depth for r in rows] == [1, 2]
    assert rows[1].params == 2 * rows[0].params == 2 * structlayers.create("acdc", 16, 16, bias=False).params() == 64
    assert all(r.seeds == 2 and r.rel_error_std >= 0 for r in rows)
    assert json.loads(result.to_json())["rows"][0]["layer"] == "acdc"
    assert "SVD" in result.to_text()


def test_interrupt_keeps_finished_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import structlayers.lab.approx.experiment as experiment

    real_fit = experiment.fit_layer
    calls = {"n": 0}

    def fit_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(experiment, "fit_layer", fit_then_interrupt)
    result = run_approx(ApproxConfig(n=8, depths=(1, 2), seeds=(0, 1), steps=5), progress=False)
    assert result.interrupted and len(result.runs) == 2
    assert "interrupted" in result.to_text()


def test_cli_writes_table_json_and_plot(tmp_path, capsys: pytest.CaptureFixture) -> None:
    out, plot = tmp_path / "r.json", tmp_path / "p.png"
    code = main(["approx", "--layer", "acdc", "--n", "8", "--depth", "1,2", "--seeds", "2", "--steps", "5",
                 "--shuffle", "random", "--out", str(out), "--plot", str(plot), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "rel. Frobenius error" in text and "SVD error" in text
    assert json.loads(out.read_text())["config"]["shuffle"] == "random"
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_cli_lbfgs_and_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["approx", "--layer", "afdf", "--n", "8", "--steps", "3", "--seeds", "0,4", "--optimizer",
                 "lbfgs", "-o", "init=identity", "--no-progress"]) == 0
    assert "afdf" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--layer", "nope"], "unknown layer 'nope'"),
        (["--layer", "dense", "--depth", "2"], "cannot be stacked"),
        (["--n", "1"], "--n must be at least 2"),
        (["-o", "colour=red"], "no option"),
    ],
)
def test_cli_bad_input_is_a_clear_error(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["approx", "--steps", "2", "--no-progress", *argv]) == 2
    assert message in capsys.readouterr().err
