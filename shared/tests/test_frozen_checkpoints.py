"""Checkpoints hold what training changes: frozen tensors stored once per run or referred to by sha256."""

import shutil

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset

from perception_shared import pretrained as P
from perception_shared.checkpoint import (
    CheckpointManager,
    atomic_save,
    consolidate_checkpoint,
    load_checkpoint,
    restore_model,
    uses_pretrained,
)
from perception_shared.distributed import init_distributed
from perception_shared.errors import CheckpointError
from perception_shared.samplers import make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.testing import go_offline
from perception_shared.training import LoopConfig, StepOutput, Trainer

TIMM_ID = "test_resnet.r160_in1k"


class Frozen(nn.Module):
    """A frozen random-init 'backbone' (with a buffer) and a trainable head."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 256), nn.BatchNorm1d(256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh())
        self.backbone.requires_grad_(False)
        self.head = nn.Linear(256, 1)

    def forward(self, x):
        return self.head(self.backbone(x)).squeeze(-1)


class OnPretrained(nn.Module):
    """A frozen tiny timm backbone built by perception_shared.pretrained and a trainable head."""

    def __init__(self, file):
        super().__init__()
        self.backbone, _ = P.create_timm_model(TIMM_ID, pretrained=file is not None, file=file, num_classes=0)
        self.backbone.requires_grad_(False)
        self.head = nn.Linear(self.backbone.num_features, 1)

    def forward(self, x):
        return self.head(self.backbone(x)).squeeze(-1)


def fit(model, run_dir, epochs, *, resume=False, x_shape=(4,), keep_last=2):
    seed_everything(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, *x_shape, generator=g)
    y = x.flatten(1).sum(1)
    loader = make_train_loader(TensorDataset(x, y), batch_size=8, seed=3)

    def step(m, batch, info):
        xb, yb = batch
        return StepOutput(((m(xb) - yb) ** 2).mean(), {}, n=len(yb))

    def evaluate(m, epoch):
        return {"loss": float(((m(x) - y) ** 2).mean())}

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    trainer = Trainer(model=model, optimizer=opt, train_loader=loader, step_fn=step, eval_fn=evaluate,
                      loop=LoopConfig(epochs=epochs, keep_last=keep_last), ctx=init_distributed("cpu", environ={}),
                      run_dir=run_dir, config={"epochs": epochs})
    trainer.fit(resume=resume)
    return trainer


def raw(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_a_frozen_random_init_backbone_is_written_once_per_run(tmp_path):
    torch.manual_seed(0)
    model = Frozen()
    fit(model, tmp_path, 3)
    frozen_files = list((tmp_path / "frozen").iterdir())
    assert len(frozen_files) == 1
    frozen_keys = {f"backbone.{i}.{p}" for i in (0, 1, 3) for p in ("weight", "bias")}
    checkpoints = sorted(tmp_path.glob("*.pth"))
    assert [p.name for p in checkpoints] == [
        "best_model.pth", "checkpoint_epoch_2.pth", "checkpoint_epoch_3.pth", "final_model.pth", "last.pth"]
    for path in checkpoints:
        state = raw(path)
        assert frozen_keys.isdisjoint(state["model"])  # the batch-norm statistics change in training: kept
        assert {"backbone.1.running_mean", "head.weight"} <= set(state["model"])
        assert [ref["kind"] for ref in state["frozen"]] == ["run"] and set(state["frozen"][0]["keys"]) == frozen_keys
        assert path.stat().st_size < frozen_files[0].stat().st_size / 4  # 256 x 256 weights are not in it
        loaded = load_checkpoint(path)
        assert set(loaded["model"]) == set(model.state_dict()) and loaded["frozen"] == []
    final = load_checkpoint(tmp_path / "final_model.pth")["model"]
    assert all(torch.equal(v, final[k]) for k, v in model.state_dict().items())  # bit-identical
    again = Frozen()
    restore_model(again, load_checkpoint(tmp_path / "final_model.pth"), "final")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_sibling_runs_with_the_same_frozen_backbone_share_one_file_and_an_altered_one_is_not_linked(tmp_path):
    runs = []
    for name in ("baseline", "regularized", "third"):
        torch.manual_seed(0)  # the same random-init backbone in every run, as a study's arms with one seed
        runs.append(tmp_path / name)
        fit(Frozen(), runs[-1], 1)
        if name == "regularized":  # a damaged file in one run must not spread to the next
            (victim,) = (runs[0] / "frozen").iterdir()
            victim.unlink()
            victim.write_bytes(b"damaged")
    (a,), (b,), (c,) = ((run / "frozen").iterdir() for run in runs)
    assert a.name == b.name == c.name
    assert b.stat().st_ino != a.stat().st_ino  # a was damaged before b was written: b is its own copy
    assert c.stat().st_ino == b.stat().st_ino and b.stat().st_nlink == 2  # one file on disk, two runs
    assert set(load_checkpoint(runs[2] / "final_model.pth")["model"]) == set(Frozen().state_dict())


def test_a_missing_or_altered_frozen_file_is_named_and_consolidate_makes_a_checkpoint_self_contained(tmp_path):
    torch.manual_seed(0)
    fit(Frozen(), tmp_path / "run", 1)
    (frozen_file,) = (tmp_path / "run" / "frozen").iterdir()
    copy = tmp_path / "elsewhere" / "best.pth"
    copy.parent.mkdir()
    shutil.copy(tmp_path / "run" / "best_model.pth", copy)
    with pytest.raises(CheckpointError, match=rf"{frozen_file.name}.*does not exist.*consolidate_checkpoint"):
        load_checkpoint(copy)
    consolidate_checkpoint(tmp_path / "run" / "best_model.pth", copy)
    assert set(load_checkpoint(copy)["model"]) == set(Frozen().state_dict())

    state = raw(frozen_file)
    state["tensors"]["backbone.0.bias"][0] += 1.0
    torch.save(state, frozen_file)
    with pytest.raises(CheckpointError, match=rf"{frozen_file}.*altered"):
        load_checkpoint(tmp_path / "run" / "last.pth")


def test_resume_with_a_frozen_backbone_equals_the_straight_run(tmp_path):
    torch.manual_seed(0)
    straight = Frozen()
    torch.manual_seed(0)
    resumed = Frozen()
    fit(straight, tmp_path / "a", 3)
    fit(resumed, tmp_path / "b", 2)
    torch.manual_seed(5)  # a fresh model: resume must bring back the frozen tensors too
    fresh = Frozen()
    fit(fresh, tmp_path / "b", 3, resume=True)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in straight.state_dict().items())
    assert len(list((tmp_path / "b" / "frozen").iterdir())) == 1


def test_frozen_then_unfrozen_parameters_are_referenced_then_stored(tmp_path):
    model = Frozen()
    mgr = CheckpointManager(tmp_path, enabled=True)
    stored, refs = mgr.model_state(model)
    assert "backbone.0.weight" not in stored and refs[0]["kind"] == "run"
    atomic_save({"model": stored, "frozen": refs}, tmp_path / "frozen_phase.pth")
    model.backbone.requires_grad_(True)
    with torch.no_grad():
        model.backbone[0].weight.add_(1.0)  # trained after unfreezing
    stored, refs = mgr.model_state(model)
    assert refs == [] and torch.equal(stored["backbone.0.weight"], model.backbone[0].weight)
    atomic_save({"model": stored, "frozen": refs}, tmp_path / "trained_phase.pth")
    first = load_checkpoint(tmp_path / "frozen_phase.pth")["model"]
    assert torch.equal(first["backbone.0.weight"] + 1.0, model.backbone[0].weight.detach())


def test_an_old_checkpoint_with_the_whole_model_still_loads(tmp_path):
    model = Frozen()
    atomic_save({"format": "perception-lab-checkpoint/1", "model": model.state_dict()}, tmp_path / "old.pth")
    state = load_checkpoint(tmp_path / "old.pth")
    assert not uses_pretrained(state)
    again = Frozen()
    restore_model(again, state, tmp_path / "old.pth")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.fixture
def weights_file(tmp_path, monkeypatch):
    go_offline(monkeypatch, tmp_path)
    torch.manual_seed(1)
    state = {k: v.contiguous() for k, v in timm.create_model(TIMM_ID, pretrained=False).state_dict().items()}
    path = tmp_path / "weights" / "model.safetensors"
    path.parent.mkdir()
    save_file(state, str(path))
    return path


def test_frozen_pretrained_weights_are_referenced_by_identifier_and_checked_on_load(tmp_path, weights_file):
    model = OnPretrained(weights_file)
    fit(model, tmp_path / "run", 1, x_shape=(3, 32, 32))
    state = raw(tmp_path / "run" / "final_model.pth")
    (ref,) = state["frozen"]
    params = {f"backbone.{k}" for k, _ in model.backbone.named_parameters()}
    assert ref["kind"] == "pretrained" and ref["identifier"] == TIMM_ID and params <= set(ref["keys"])
    assert params.isdisjoint(state["model"]) and not (tmp_path / "run" / "frozen").exists()

    loaded = load_checkpoint(tmp_path / "run" / "final_model.pth")
    assert uses_pretrained(loaded)
    again = OnPretrained(weights_file)
    restore_model(again, loaded, "final")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    fit(OnPretrained(weights_file), tmp_path / "run", 2, resume=True, x_shape=(3, 32, 32))

    with pytest.raises(CheckpointError, match=rf"{TIMM_ID}.*built without pretrained weights"):
        restore_model(OnPretrained(None), loaded, "final")
    other = {k: v + 1 if v.is_floating_point() else v for k, v in timm.create_model(TIMM_ID).state_dict().items()}
    save_file(other, str(weights_file))
    with pytest.raises(CheckpointError, match=rf"final was trained on frozen {TIMM_ID} weights with sha256.*the weights found for {TIMM_ID}.*not the ones training used"):
        restore_model(OnPretrained(weights_file), loaded, "final")


def test_a_malformed_frozen_entry_is_a_checkpoint_error(tmp_path):
    atomic_save({"model": {}, "frozen": [{"kind": "run", "keys": ["w"], "sha256": "0" * 64}]}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="bad.pth: its 'frozen' entry is not a list of frozen-tensor references"):
        load_checkpoint(tmp_path / "bad.pth")
