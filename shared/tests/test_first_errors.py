"""First errors: no run folder left by a failed start, option ranges, the config names in --help, the export extra."""

import argparse
import importlib.util

import pytest
import torch
from torch import nn

from perception_shared.cli import add_config_args, check_option, run_cli, writing_output
from perception_shared.errors import DataError, UserError
from perception_shared.export import export_model, require_export_extra
from perception_shared.extras import MissingExtraError
from perception_shared.runs import prepare_run_dir


def _failing_train(out, leave=None):
    def main(argv):
        run = prepare_run_dir(out)
        (run / "train.log").write_text("started\n")
        if leave:
            (run / leave).write_text("x")
        raise DataError("--data nowhere: no such folder")

    return main


def test_a_train_that_fails_before_its_first_step_leaves_no_run_folder(tmp_path, capsys):
    assert run_cli(_failing_train(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "error: --data nowhere" in err and "failed before its first step" in err
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("leave", ["last.pth", "progress.json"])
def test_a_run_that_took_a_step_is_kept(tmp_path, leave):
    assert run_cli(_failing_train(tmp_path / "out", leave)) == 2
    (run,) = (tmp_path / "out").iterdir()
    assert (run / leave).is_file() and (run / "train.log").is_file()


def test_an_existing_run_directory_is_never_removed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()

    def main(argv):
        prepare_run_dir(run_dir=run)
        raise UserError("bad --set")

    assert run_cli(main) == 2 and run.is_dir()


def test_config_help_lists_the_package_configs(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg_xyz"
    (pkg / "configs").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name in ("small", "large"):
        (pkg / "configs" / f"{name}.yaml").write_text("{}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    parser = argparse.ArgumentParser(prog="fakepkg-xyz train")
    add_config_args(parser, default_config="small")
    help_text = " ".join(parser.format_help().split())
    assert "configs (large, small); default: small" in help_text and "baseline" not in help_text
    other = argparse.ArgumentParser(prog="not-a-package-xyz train")
    add_config_args(other)
    assert "baseline" not in other.format_help()


def test_check_option_and_writing_output_say_what_is_wrong_in_one_line(tmp_path):
    check_option("--size", 16, low=16, high=4096)
    with pytest.raises(UserError, match=r"^--train-participants must be at least 1, got 0$"):
        check_option("--train-participants", 0, low=1)
    with pytest.raises(UserError, match=r"^--noise must be at least 0, got nan$"):
        check_option("--noise", float("nan"), low=0)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"make-synthetic: cannot write .*file/images: Not a directory"):
        with writing_output(blocker / "images", "make-synthetic"):
            (blocker / "images").mkdir()
    with pytest.raises(UserError, match="not enough memory"):
        with writing_output(tmp_path, "make-synthetic"):
            raise MemoryError


def _hide(monkeypatch, *names):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in names else real(name, *a))


def test_onnx_export_without_onnx_names_the_calling_package_extra_before_writing(tmp_path, monkeypatch):
    _hide(monkeypatch, "onnx")
    model_cls = type("GazeNet", (nn.Linear,), {"__module__": "gaze_estimation.models"})
    out = tmp_path / "export" / "model.onnx"
    with pytest.raises(MissingExtraError) as e:
        export_model(model_cls(3, 2), torch.zeros(2, 3), out, fmt="onnx", input_names=["x"], output_names=["y"],
                     preprocessing={})
    assert str(e.value) == 'onnx export needs onnx (the [export] extra): pip install "packages/gaze-estimation[export]"'
    assert not out.parent.exists()
    with pytest.raises(MissingExtraError, match=r'pip install "packages/image-rating\[export\]"'):
        require_export_extra("onnx", "image-rating")
    require_export_extra("torchscript", "image-rating")  # needs nothing beyond torch


def test_checking_an_onnx_export_needs_onnxruntime(monkeypatch):
    _hide(monkeypatch, "onnxruntime")
    require_export_extra("onnx", "sparse-video-loss", run=False)
    with pytest.raises(MissingExtraError, match=r'needs onnxruntime .*"packages/sparse-video-loss\[export\]"'):
        require_export_extra("onnx", "sparse-video-loss")
