"""Issue 13: the checkpoint is selected on held-out training participants, the error reported on others."""

import json

import pytest

from gaze_estimation.data import find_h5_files, participant_id, split_selection
from perception_shared.checkpoint import load_checkpoint
from perception_shared.errors import ConfigError


def test_selection_split_is_disjoint_by_participant_and_seeded(synth_root):
    files = find_h5_files(synth_root, "train")
    for count, seed in ((1, 0), (2, 0), (2, 5), (3, 1)):
        s = split_selection(files, count, seed)
        trained, held_out = {participant_id(p) for p in s.train}, {participant_id(p) for p in s.selection}
        assert len(held_out) == count and not trained & held_out and trained | held_out == {participant_id(p) for p in files}
        assert split_selection(files, count, seed) == s  # the same split every time
    assert {participant_id(p) for p in split_selection(files, ["train02"]).selection} == {"train02"}
    draws = {tuple(participant_id(p) for p in split_selection(files, 2, seed).selection) for seed in range(8)}
    assert len(draws) > 1  # the seed picks which participants
    with pytest.raises(ConfigError, match="selection_participants is 4"):
        split_selection(files, 4)
    with pytest.raises(ConfigError, match="selection_participants names train09"):
        split_selection(files, ["train09"])


def test_selection_and_report_participants_never_overlap(tiny_run, tmp_path):
    from gaze_estimation.cli import main

    extra = load_checkpoint(tiny_run / "best_model.pth")["extra"]
    selection, trained = set(extra["selection_participants"]), set(extra["train_participants"])
    assert len(selection) == 1 and len(trained) == 3 and not selection & trained
    assert main(["evaluate", str(tiny_run), "--out", str(tmp_path / "e"), "--device", "cpu"]) == 0
    protocol = json.loads((tmp_path / "e" / "metrics.json").read_text())["protocol"]
    reported = set(protocol["report_participants"])
    assert reported == {"val01", "val02"} and not reported & (selection | trained)
    assert protocol["disjoint"] is True and protocol["selection_participants"] == sorted(selection)
    assert "selected on held-out training participants" in protocol["statement"]
