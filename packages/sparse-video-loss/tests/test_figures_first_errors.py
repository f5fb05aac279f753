"""Every figure of a small run in the shared style, and the first errors a new user meets."""

import importlib.util

import pytest

from perception_shared.figures import record_figures
from sparse_video_loss.cli import main


def test_every_figure_of_a_small_run_has_labels_colour_bars_and_fitting_titles(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    trace = tmp_path / "trace.csv"
    trace.write_text("sequence,t,x,y\n" + "".join(f"a,{i * 0.04:.2f},{100 + 5 * i},{200 + 3 * i}\n" for i in range(14)))
    with record_figures() as figures:
        assert main(["train", "--config", "demo", "--data", str(tiny_data), "--run-dir", str(run), "--device", "cpu",
                     "--set", "loop.epochs=1", "--set", "loop.max_steps_per_epoch=1"]) == 0
        assert main(["evaluate", str(run), "--device", "cpu"]) == 0
        assert main(["predict", "--run", str(run), str(trace), "--out", str(tmp_path / "pred"),
                     "--screen-width", "1280", "--screen-height", "720", "--frame-rate", "25"]) == 0
    names = sorted(p.rsplit("/", 1)[-1] for p in figures)
    assert names == ["per_horizon.png", "predictions.png", "strip.png", "training_history.png"], names
    assert all(problems == [] for problems in figures.values()), figures


def test_export_without_onnx_is_one_line_naming_the_extra(tiny_data, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a))
    assert main(["export", str(tmp_path / "no_run_needed_first")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'error: onnx export needs onnx (the [export] extra): pip install "packages/sparse-video-loss[export]"'


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-train", "0"], "--n-train must be between 1 and 1000000, got 0"),
        (["--frames", "100000"], "--frames must be between 2 and 1000, got 100000"),
        (["--size", "4"], "--size must be between 8 and 4096, got 4"),
        (["--seed", "-1"], "--seed must be at least 0, got -1"),
    ],
)
def test_make_synthetic_arguments_fail_in_one_line(args, message, tmp_path, capsys):
    assert main(["make-synthetic", str(tmp_path / "d"), *args]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_make_synthetic_into_a_file_fails_in_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main(["make-synthetic", str(tmp_path / "f"), "--n-train", "1", "--n-val", "1", "--n-test", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: make-synthetic: cannot write")


def test_train_with_a_wrong_data_folder_leaves_no_run_folder(tmp_path, capsys):
    out = tmp_path / "outputs"
    assert main(["train", "--config", "demo", "--data", str(tmp_path / "nowhere"), "--output-dir", str(out)]) == 2
    assert "failed before its first step" in capsys.readouterr().err
    assert list(out.iterdir()) == []
