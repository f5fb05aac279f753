import hashlib
import json
import logging
import math
import os
import signal

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from perception_shared import plotting
from perception_shared.checkpoint import load_checkpoint
from perception_shared.distributed import init_distributed
from perception_shared.figures import Quantity, record_figures, run_status
from perception_shared.preemption import MARKER, Preempted
from perception_shared.samplers import make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.tracking import read_scalars
from perception_shared.training import HISTORY_PNG, LoopConfig, NonFiniteLossError, StepOutput, Trainer

TRUE_W = torch.tensor([1.5, -2.0, 0.5, 3.0])


class NoisyRegression(Dataset):
    """y = x . w; random augmentation (input noise) drawn from the global RNGs inside __getitem__."""

    def __init__(self, n=48):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ TRUE_W

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.05 * torch.randn(4), self.y[i]


def build(run_dir, epochs, *, workers=0, sched="multistep", signal_at=None, patience=None, lr=0.05, loop_kw=None,
          history_plot=None):
    seed_everything(0)
    ctx = init_distributed("cpu", environ={})
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.1), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler, interval = None, "epoch"
    if sched == "multistep":
        scheduler = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.5)
    elif sched == "plateau":
        scheduler, interval = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5), "plateau"
    ds = NoisyRegression()
    loader = make_train_loader(ds, batch_size=8, seed=7, num_workers=workers)
    val = TensorDataset(ds.x, ds.y)

    def step(m, batch, info):
        if signal_at is not None and info.step == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled at the end of this step
        x, y = batch
        loss = ((m(x).squeeze(-1) - y) ** 2).mean()
        return StepOutput(loss, {"abs": (m(x).squeeze(-1) - y).abs().mean()}, n=len(y))

    def evaluate(m, epoch):
        x, y = val.tensors
        return {"loss": float(((m(x).squeeze(-1) - y) ** 2).mean())}

    loop = LoopConfig(**{"epochs": epochs, "early_stopping_patience": patience, "log_every": 2, **(loop_kw or {})})
    trainer = Trainer(model=model, optimizer=opt, train_loader=loader, step_fn=step, eval_fn=evaluate,
                      loop=loop, ctx=ctx, run_dir=run_dir, config={"epochs": epochs}, scheduler=scheduler,
                      scheduler_interval=interval, history_plot=history_plot)
    return trainer, model


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_two_epochs_plus_resume_equals_three_straight(tmp_path):
    straight, m1 = build(tmp_path / "a", 3)
    r1 = straight.fit()
    first, _ = build(tmp_path / "b", 2)
    first.fit()
    resumed, m2 = build(tmp_path / "b", 3)
    r2 = resumed.fit(resume=True)
    assert torch.allclose(params(m1), params(m2), atol=1e-6)
    assert [h["val/loss"] for h in r1.history] == pytest.approx([h["val/loss"] for h in r2.history], rel=1e-6)
    assert r2.global_step == r1.global_step == 18
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)  # the scheduler resumed too


def test_sigterm_mid_epoch_saves_and_resume_matches_uninterrupted(tmp_path):
    """Random augmentation in 2 worker processes, a real SIGTERM in the middle of epoch 2."""
    straight, m1 = build(tmp_path / "a", 3, workers=2)
    r1 = straight.fit()
    interrupted, _ = build(tmp_path / "b", 3, workers=2, signal_at=8)
    with pytest.raises(Preempted, match="SIGTERM"):
        interrupted.fit()
    assert (tmp_path / "b" / MARKER).exists()
    state = load_checkpoint(tmp_path / "b" / "last.pth")
    assert (state["epoch"], state["global_step"], state["batch_in_epoch"]) == (1, 9, 3)
    resumed, m2 = build(tmp_path / "b", 3, workers=2)
    r2 = resumed.fit(resume=True)
    assert not (tmp_path / "b" / MARKER).exists()
    assert torch.allclose(params(m1), params(m2), atol=1e-6)
    h1, h2 = r1.history, r2.history
    assert [h["train/loss"] for h in h1] == pytest.approx([h["train/loss"] for h in h2], rel=1e-6)
    # the replayed steps are not logged twice
    steps = [s for s, _ in read_scalars(tmp_path / "b" / "metrics.csv")["train_step/loss"]]
    assert steps == sorted(set(steps)) == list(range(2, 19, 2))


def test_training_learns_the_known_linear_map(tmp_path):
    trainer, model = build(tmp_path, 20, sched=None, lr=0.03)
    result = trainer.fit()
    # the optimum is ~0 (inputs carry 0.05 noise); start ~10
    assert result.best_metric < 0.05 * result.history[0]["val/loss"]
    assert result.best_metric == min(h["val/loss"] for h in result.history)
    assert result.best_epoch is not None and (tmp_path / "best_model.pth").exists()
    best = load_checkpoint(tmp_path / "best_model.pth")
    assert best["epoch"] == result.best_epoch
    for name in ("training_history.csv", "training_history.png", "metrics.csv", "config.yaml", "final_model.pth"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "tensorboard").is_dir()


def test_keep_last_prunes_periodic_checkpoints(tmp_path):
    trainer, _ = build(tmp_path, 5, loop_kw={"keep_last": 2, "checkpoint_every": 1})
    trainer.fit()
    assert sorted(p.name for p in tmp_path.glob("checkpoint_epoch_*.pth")) == ["checkpoint_epoch_4.pth", "checkpoint_epoch_5.pth"]


def test_early_stopping_and_plateau_scheduler(tmp_path):
    # lr so high that validation never improves after the first epoch
    trainer, _ = build(tmp_path, 30, sched="plateau", patience=2, lr=5.0)
    result = trainer.fit()
    assert result.stopped_early and result.epochs_completed < 30
    lrs = [h["lr"] for h in result.history]
    assert lrs[-1] < lrs[0]  # ReduceLROnPlateau acted on the monitored value


def test_nonfinite_loss_stops_at_the_next_log_interval_and_is_never_checkpointed(tmp_path):
    trainer, _ = build(tmp_path, 2)  # log_every=2
    original = trainer.step_fn

    def step(m, b, info):
        out = original(m, b, info)
        return StepOutput(out.loss * math.nan, out.metrics, out.n) if info.step == 2 else out

    trainer.step_fn = step
    with pytest.raises(NonFiniteLossError, match="NaN or infinite in epoch 1 before step 4"):
        trainer.fit()
    assert not list(tmp_path.glob("*.pth"))  # no checkpoint holds weights a NaN step touched
    assert json.loads((tmp_path / "manifest.json").read_text())["status"] == "failed"


def test_nonfinite_loss_on_the_last_step_of_an_epoch_stops_before_the_checkpoint(tmp_path):
    trainer, _ = build(tmp_path, 2, loop_kw={"log_every": 1000})
    original = trainer.step_fn
    trainer.step_fn = lambda m, b, info: StepOutput(original(m, b, info).loss * math.inf) if info.batch_index == 5 else original(m, b, info)
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        trainer.fit()
    assert not list(tmp_path.glob("*.pth"))


def test_skipping_nonfinite_batches_when_asked(tmp_path):
    trainer, _ = build(tmp_path, 1, loop_kw={"stop_on_nonfinite": False})
    original = trainer.step_fn
    trainer.step_fn = lambda m, b, info: StepOutput(original(m, b, info).loss * math.nan) if info.batch_index == 1 else original(m, b, info)
    result = trainer.fit()
    assert result.global_step == 5 and math.isfinite(result.history[-1]["train/loss"])


def test_training_steps_read_the_host_once_per_log_interval(tmp_path):
    from perception_shared.testing import count_host_reads

    trainer, _ = build(tmp_path, 1, loop_kw={"log_every": 3, "grad_clip": 1.0})  # 6 steps, 1 epoch
    trainer.eval_fn = None
    # only the loop: the checkpoints and history after the epoch are allowed their reads
    original_end = trainer._end_epoch
    reads = {}

    def end_epoch():
        reads["loop"] = counter.count
        return original_end()

    trainer._end_epoch = end_epoch
    with count_host_reads() as counter:
        trainer.fit()
    assert reads["loop"] <= 6 // 3, counter.summary()
    assert counter.count > reads["loop"]  # the counter does see the reads at the epoch's end
    history = (tmp_path / "metrics.csv").read_text()
    assert "train_step/grad_norm" in history and "train_step/abs" in history


def test_manifest_records_the_run_and_its_end(tmp_path):
    trainer, _ = build(tmp_path, 1)
    data = tmp_path.parent / f"{tmp_path.name}_data.bin"
    data.write_bytes(b"abc" * 1000)
    trainer.manifest_info = {"data_paths": {"train": data}, "seeds": {"seed": 7}, "weights": [{"identifier": "none", "kind": "random"}]}
    trainer.fit()
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["status"] == "completed" and m["exit_code"] == 0 and m["end_time"]
    assert m["data"]["train"]["bytes"] == 3000
    assert m["data"]["train"]["hash"] == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert m["seeds"] == {"seed": 7} and m["weights"][0]["kind"] == "random"
    assert m["world_size"] == 1 and "torch" in m["versions"] and m["config"] == {"epochs": 1}


def test_resume_after_an_unannounced_kill_says_how_many_steps_were_lost(tmp_path, caplog):
    trainer, _ = build(tmp_path, 2, signal_at=3)
    with pytest.raises(Preempted):
        trainer.fit()  # checkpoint at step 4
    (tmp_path / "progress.json").write_text(json.dumps({"global_step": 7}))  # the killed attempt got further
    again, _ = build(tmp_path, 2)
    with caplog.at_level(logging.WARNING):
        again.fit(resume=True)
    assert "3 step(s) were lost" in caplog.text


def test_resume_messages_name_one_step_when_the_epoch_ends_between_log_intervals(tmp_path, caplog):
    # 6 steps per epoch, logged every 4: the epoch's checkpoint (step 6) is after the last log interval (4)
    trainer, _ = build(tmp_path, 1, loop_kw={"log_every": 4})
    trainer.fit()
    assert json.loads((tmp_path / "progress.json").read_text())["global_step"] == 6
    again, _ = build(tmp_path, 2, loop_kw={"log_every": 4})
    with caplog.at_level(logging.INFO):
        again.fit(resume=True)
    resumed = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("resumed from", "no steps lost"))]
    assert len(resumed) == 2 and ", step 6, batch 0" in resumed[0]
    assert resumed[1] == "no steps lost: the checkpoint is at the last step the previous attempt logged (6)"
    assert "were lost" not in caplog.text


def test_resume_with_a_model_that_does_not_fit_is_a_checkpoint_error(tmp_path):
    from perception_shared.errors import CheckpointError

    trainer, _ = build(tmp_path, 1)
    trainer.fit()
    other, _ = build(tmp_path, 2)
    other.module = nn.Linear(4, 1)
    with pytest.raises(CheckpointError, match="does not fit"):
        other.fit(resume=True)


def test_best_and_final_hold_the_model_only_and_cannot_be_resumed_from(tmp_path):
    from perception_shared.checkpoint import RESUME_ONLY
    from perception_shared.errors import CheckpointError

    trainer, model = build(tmp_path / "run", 2)
    trainer.fit()
    last = load_checkpoint(tmp_path / "run" / "last.pth")
    for name in ("best_model.pth", "final_model.pth"):
        state = load_checkpoint(tmp_path / "run" / name)
        assert not set(RESUME_ONLY) & set(state) and set(RESUME_ONLY) <= set(last)
        assert {"model", "config", "history", "extra", "epoch"} <= set(state)
    final = load_checkpoint(tmp_path / "run" / "final_model.pth")["model"]
    assert all(torch.equal(v, final[k]) for k, v in model.state_dict().items())
    other, _ = build(tmp_path / "run", 3)
    with pytest.raises(CheckpointError, match="final_model.pth holds the model only .* resume from last.pth"):
        other.fit(resume_from=tmp_path / "run" / "final_model.pth")


def test_resume_without_checkpoint_is_an_error(tmp_path):
    from perception_shared.errors import CheckpointError

    trainer, _ = build(tmp_path, 1)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        trainer.fit(resume=True)


def test_a_mid_epoch_checkpoint_keeps_every_ranks_running_sums():
    from perception_shared.training import _merged_means

    saved = [{"sums": {"loss": 2.0}, "counts": {"loss": 4.0}}, {"sums": {"loss": 6.0}, "counts": {"loss": 4.0}}]
    first = _merged_means(saved, first_rank=True)
    other = _merged_means(saved, first_rank=False)
    # summed over the ranks of the resumed job, the epoch's mean is the one of both saved ranks: 8 / 8
    assert first == {"sums": {"loss": 8.0}, "counts": {"loss": 8.0}}
    assert other == {"sums": {"loss": 0.0}, "counts": {"loss": 0.0}}
    assert _merged_means({"sums": {"a": 1.0}, "counts": {"a": 2.0}}, first_rank=True)["counts"] == {"a": 2.0}


def test_history_plot_settings_reach_the_figure_with_the_best_epoch_marked(tmp_path, monkeypatch):
    trainer, _ = build(tmp_path / "run", 3, loop_kw={"max_steps_per_epoch": 1},
                       history_plot={"status": run_status(toy=True), "labels": {"loss": Quantity("squared error", "m^2")}})
    val_losses = [3.0, 1.0, 2.0]  # the best epoch (2) is neither the first nor the last
    trainer.eval_fn = lambda m, epoch: {"loss": val_losses[epoch - 1]}
    drawn = []
    save = plotting.save_figure

    def keep(fig, path):
        drawn.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plotting, "save_figure", keep)
    with record_figures() as found:
        fit = trainer.fit()
    assert fit.best_epoch == 2
    assert found == {str(tmp_path / "run" / HISTORY_PNG): []}  # labelled, nothing cut off
    fig = drawn[-1]
    assert "TOY SETTINGS" in fig._suptitle.get_text()
    loss_ax = next(ax for ax in fig.axes if ax.get_ylabel() == "squared error (m^2)")
    best = [line for line in loss_ax.lines if line.get_label() == "best epoch (2)"]
    assert len(best) == 1 and list(best[0].get_xdata()) == [2, 2]


def test_history_plot_must_not_name_the_best_epoch(tmp_path):
    with pytest.raises(ValueError, match="best_epoch"):
        build(tmp_path / "run", 1, history_plot={"best_epoch": 1})
