"""The training core: seeding, the optimiser loop, progress reports, checkpoints."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from evgen.errors import OutputError
from evgen.ml import (
    CheckpointError,
    Trainer,
    TrainingConfig,
    TrainingError,
    TrainingProgress,
    UnitHypercubeCFM,
    UnitHypercubeFlow,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


def _quadratic_problem() -> tuple[torch.nn.Module, Callable[[], torch.Tensor]]:
    """Least squares for a linear map: the loss has a known minimum, 0."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, dtype=F64)
    x = torch.randn(256, 3, dtype=F64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=F64) + 0.3
    return model, lambda: ((model(x) - y) ** 2).mean()


def test_seed_everything_makes_runs_identical() -> None:
    g = seed_everything(123)
    a = (torch.rand(3, generator=g), torch.rand(3))
    g = seed_everything(123)
    b = (torch.rand(3, generator=g), torch.rand(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


def test_fit_converges_and_reports() -> None:
    model, loss = _quadratic_problem()
    config = TrainingConfig(steps=300, learning_rate=0.05, report_every=100, warmup_steps=10)
    reports: list[TrainingProgress] = []
    result = Trainer(model, config).fit(loss, callback=reports.append)
    assert result.steps == 300 and len(result.losses) == 300 and not result.stopped_early
    assert result.losses[-1] < 1e-4 * result.losses[0]
    assert [r.step for r in reports] == [100, 200, 300]
    assert all(r.total_steps == 300 for r in reports)
    # Cosine schedule: the learning rate falls towards final_lr_fraction of the peak.
    assert reports[0].learning_rate > reports[1].learning_rate > reports[2].learning_rate
    assert reports[2].learning_rate < 0.05 * 0.02
    assert math.isclose(reports[0].mean_loss, sum(result.losses[:100]) / 100)


def test_learning_rate_schedule() -> None:
    config = TrainingConfig(steps=110, warmup_steps=10, final_lr_fraction=0.1)
    assert config.lr_factor(0) == pytest.approx(1 / 11)
    assert config.lr_factor(10) == pytest.approx(1.0)
    assert config.lr_factor(60) == pytest.approx(0.55)
    assert config.lr_factor(110) == pytest.approx(0.1)
    assert config.lr_factor(10_000) == pytest.approx(0.1)
    constant = TrainingConfig(schedule="constant")
    assert constant.lr_factor(500) == 1.0


def test_callback_stops_early() -> None:
    model, loss = _quadratic_problem()
    trainer = Trainer(model, TrainingConfig(steps=100, report_every=5))
    result = trainer.fit(loss, callback=lambda p: p.step >= 20)
    assert result.steps == 20 and result.stopped_early and trainer.step_count == 20


def test_gradient_clipping_bounds_the_update() -> None:
    model = torch.nn.Linear(1, 1, bias=False, dtype=F64)
    with torch.no_grad():
        model.weight.fill_(0.0)
    config = TrainingConfig(steps=1, learning_rate=1.0, max_grad_norm=1e-3, schedule="constant")
    trainer = Trainer(model, config)
    _, grad_norm = trainer.step(lambda: 1e6 * model(torch.ones(1, 1, dtype=F64)).sum())
    assert grad_norm == pytest.approx(1e6)  # reported before clipping
    # The gradient the optimiser used is the clipped one.
    assert float(model.weight.grad.norm()) == pytest.approx(1e-3)


def test_non_finite_loss_raises_and_leaves_parameters() -> None:
    model, _ = _quadratic_problem()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model, TrainingConfig())
    with pytest.raises(TrainingError, match="loss is nan at step 1"):
        trainer.step(lambda: model.weight.sum() * float("nan"))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        TrainingConfig(learning_rate=0.0)


@pytest.mark.parametrize("kind", ["flow", "cfm"])
def test_checkpoint_round_trip(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(1)
    if kind == "flow":
        model = UnitHypercubeFlow(3, context_dim=2, bins=6, hidden=8)
        make = lambda: UnitHypercubeFlow(3, context_dim=2, bins=6, hidden=8)  # noqa: E731
    else:
        model = UnitHypercubeCFM(3, context_dim=2, hidden=8, hidden_layers=1)
        make = lambda: UnitHypercubeCFM(3, context_dim=2, hidden=8, hidden_layers=1)  # noqa: E731
    x = torch.rand(64, 3, dtype=F64)
    c = torch.randn(64, 2, dtype=F64)
    trainer = Trainer(model, TrainingConfig(steps=5, learning_rate=1e-2))
    if kind == "flow":
        trainer.fit(lambda: -model.log_prob(x, c).mean())
    else:
        trainer.fit(lambda: model.loss(x, c))
    path = tmp_path / "model.pt"
    save_checkpoint(
        path, model, trainer.optimizer, {"seed": 1, "sigma_pb": 504.9}, scheduler=trainer.scheduler
    )
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left

    restored = make()
    trainer2 = Trainer(restored, TrainingConfig(steps=5, learning_rate=1e-2))
    extra = load_checkpoint(path, restored, trainer2.optimizer, scheduler=trainer2.scheduler)
    assert extra == {"seed": 1, "sigma_pb": 504.9}
    with torch.no_grad():
        if kind == "flow":
            assert torch.equal(model.forward_map(x, c)[0], restored.forward_map(x, c)[0])
            assert torch.equal(model.log_prob(x, c), restored.log_prob(x, c))
        else:
            t = torch.full((64,), 0.4, dtype=F64)
            assert torch.equal(model.flow.velocity(x, t, c), restored.flow.velocity(x, t, c))
    # Resumed training takes the identical next step.
    assert trainer2.optimizer.param_groups[0]["lr"] == trainer.optimizer.param_groups[0]["lr"]
    if kind == "flow":
        trainer.step(lambda: -model.log_prob(x, c).mean())
        trainer2.step(lambda: -restored.log_prob(x, c).mean())
        for a, b in zip(model.parameters(), restored.parameters(), strict=True):
            assert torch.equal(a, b)


def test_checkpoint_errors(tmp_path: Path) -> None:
    flow = UnitHypercubeFlow(2, hidden=8)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "missing.pt", flow)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(junk, flow)
    path = tmp_path / "flow.pt"
    save_checkpoint(path, flow)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path, UnitHypercubeFlow(3, hidden=8))
    with pytest.raises(CheckpointError, match="no optimizer"):
        load_checkpoint(path, flow, torch.optim.Adam(flow.parameters()))
    with pytest.raises(OutputError, match="cannot write"):
        save_checkpoint(tmp_path / "no" / "such" / "folder.pt", flow)
