import subprocess
import sys
import time

import pytest
import torch

from perception_shared.checkpoint import CheckpointManager, atomic_save, load_checkpoint
from perception_shared.errors import CheckpointError


def test_save_load_round_trip_with_weights_only(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "history": [{"a": 1.0}], "name": "x"}
    atomic_save(state, tmp_path / "c.pth")
    back = load_checkpoint(tmp_path / "c.pth")
    assert back["epoch"] == 3 and torch.equal(back["model"]["w"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]  # no temporary file left behind


class Arbitrary:
    pass


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"obj": Arbitrary()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_checkpoint(tmp_path / "evil.pth")


def test_missing_and_non_dict_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
    torch.save(torch.zeros(2), tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        load_checkpoint(tmp_path / "t.pth")


def test_truncated_last_is_reported_by_name_and_previous_used(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=3, enabled=True)
    for epoch in (1, 2, 3):
        mgr.save_epoch({"epoch": epoch, "w": torch.randn(1000)}, epoch)
    data = mgr.last_path.read_bytes()
    mgr.last_path.write_bytes(data[: len(data) // 2])
    warnings = []
    path, state = mgr.load_latest(warn=warnings.append)
    assert path.name == "checkpoint_epoch_3.pth" and state["epoch"] == 3
    assert len(warnings) == 1 and "last.pth" in warnings[0] and "corrupt" in warnings[0]
    # damage the newest periodic one as well: the one before is used
    p3 = mgr.epoch_path(3)
    p3.write_bytes(p3.read_bytes()[:100])
    path, state = mgr.load_latest(warn=warnings.append)
    assert path.name == "checkpoint_epoch_2.pth" and state["epoch"] == 2


def test_all_corrupt_is_an_error_listing_files(tmp_path):
    mgr = CheckpointManager(tmp_path, enabled=True)
    mgr.save_epoch({"epoch": 1}, 1)
    for p in tmp_path.glob("*.pth"):
        p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="last.pth.*checkpoint_epoch_1.pth"):
        mgr.load_latest()
    assert CheckpointManager(tmp_path / "empty", enabled=True).load_latest() is None


def test_disabled_manager_writes_nothing(tmp_path):
    mgr = CheckpointManager(tmp_path, enabled=False)
    assert mgr.save_epoch({"epoch": 1}, 1) is None and mgr.save_best({}) is None
    assert list(tmp_path.iterdir()) == []


KILLED_WRITER = r"""
import sys, torch
from perception_shared.checkpoint import atomic_save
path = sys.argv[1]
atomic_save({"version": 0, "w": torch.zeros(8)}, path)
print("first", flush=True)
i = 1
while True:
    print("saving", i, flush=True)
    atomic_save({"version": i, "w": torch.full((20_000_000,), float(i))}, path)
    i += 1
"""


@pytest.mark.slow
def test_a_save_killed_midway_leaves_a_loadable_checkpoint(tmp_path):
    target = tmp_path / "last.pth"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "first"
        assert proc.stdout.readline().startswith("saving")
        time.sleep(0.15)  # an 80 MB save is under way
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = load_checkpoint(target)
    v = state["version"]
    assert torch.all(state["w"] == float(v))  # either the old or a complete new one, never a mix
