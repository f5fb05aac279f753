"""What a trained run is used for: predict from a CSV trace, export, evaluate on the right data; and the
weights a run starts from."""

import hashlib
import json

import numpy as np
import pytest
import torch

from perception_shared.distributed import init_distributed
from perception_shared.errors import DataError, UserError, WeightsError
from perception_shared.export import run_exported
from sparse_video_loss.cli import main
from sparse_video_loss.evaluate import evaluate_run, load_trained_model
from sparse_video_loss.export import export_run, sparse_inputs
from sparse_video_loss.predict import predict_traces
from sparse_video_loss.sequences import create_sparse_frames
from sparse_video_loss.synthetic import make_synthetic
from sparse_video_loss.train import build_loss, build_model, init_weights, load_split, train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_data, tiny_config):
    run = tmp_path_factory.mktemp("run")
    train(tiny_config(tiny_data, "loop.max_steps_per_epoch=2"), run_dir=run, ctx=init_distributed("cpu", environ={}))
    return run


def write_trace(path, rows):
    path.write_text("sequence,t,x,y\n" + "\n".join(f"{s},{t:.4f},{x},{y}" for s, t, x, y in rows) + "\n")
    return path


def test_predict_bins_the_trace_and_reports_the_model_argmax_per_future_frame(trained_run, tmp_path):
    # 100 Hz for 0.6 s = 15 frames at 25 Hz; the gaze holds still at screen (330, 250) on a 640x480 screen,
    # i.e. grid x = 330 * 32 / 640 - 0.5 = 16.0, y = 250 * 32 / 480 - 0.5 = 16.17 -> pixel (row 16, col 16).
    rows = [("still", 3 + i / 100, 330, 250) for i in range(60)]
    rows += [("short", 1 + i / 100, 100, 100) for i in range(10)]  # 0.1 s: fewer frames than the model needs
    csv = write_trace(tmp_path / "trace.csv", rows)
    info = predict_traces(trained_run, [csv], tmp_path / "pred", screen_width=640, screen_height=480, frame_rate=25)
    assert info["predicted_sequences"] == ["still"] and "'short' spans 3 frame(s)" in info["skipped"][0]
    model, _, _ = load_trained_model(trained_run / "best_model.pth", torch.device("cpu"))
    expected_input = create_sparse_frames(torch.full((10, 2), 16.0), torch.ones(10, dtype=torch.bool))  # round(16.17) = 16
    with torch.no_grad():
        probs = torch.sigmoid(model(expected_input[None]))[0, :, 0].numpy()
    with open(tmp_path / "pred" / "positions.csv") as f:
        header = f.readline().strip().split(",")
        table = [dict(zip(header, line.strip().split(","))) for line in f]
    assert [int(r["horizon"]) for r in table] == list(range(1, 11))
    for h, r in enumerate(table):
        row, col = np.unravel_index(np.argmax(probs[h]), probs[h].shape)
        assert (int(r["row"]), int(r["col"])) == (row, col)
        assert float(r["x"]) == pytest.approx((col + 0.5) * 20) and float(r["y"]) == pytest.approx((row + 0.5) * 15)
        assert float(r["p_peak"]) == pytest.approx(probs[h, row, col], rel=1e-5)
        assert float(r["t_start"]) == pytest.approx(3 + 0.6 + h * 0.04)
    assert (tmp_path / "pred" / "strip.png").stat().st_size > 0
    assert json.loads((tmp_path / "pred" / "predictions.json").read_text())["weights"]["kind"] == "random"
    with pytest.raises(UserError, match="records no screen size; give --screen-width"):
        predict_traces(trained_run, [csv], tmp_path / "p2")
    ms = write_trace(tmp_path / "ms.csv", [("a", 1000 * (3 + i / 100), 330, 250) for i in range(60)])
    with pytest.raises(DataError, match="column 't' must be in seconds"):
        predict_traces(trained_run, [ms], tmp_path / "p3", screen_width=640, screen_height=480)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_at_two_batch_sizes(trained_run, tmp_path, fmt):
    result = export_run(trained_run, fmt, tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}")
    assert [c["batch_size"] for c in result["check"]["checks"]] == [1, 3]
    meta = json.loads((tmp_path / "model.preprocessing.json").read_text())
    assert meta["inputs"][0]["shape"] == ["batch", 10, 1, 32, 32] and "sigmoid" in meta["preprocessing"]["output"]
    # independently of verify_export: another batch size, compared with the checkpoint's model
    model, _, _ = load_trained_model(trained_run / "best_model.pth", torch.device("cpu"))
    x = sparse_inputs(5, model.in_shape, seed=9)
    (got,) = run_exported(result["model"], x)
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-4)


def test_evaluate_refuses_other_data_than_the_run_recorded(trained_run, tmp_path):
    other = tmp_path / "other"
    make_synthetic(other, n_train=8, n_val=6, n_test=5, seed=11)
    ctx = init_distributed("cpu", environ={})
    with pytest.raises(UserError, match="refusing to compare runs on different data: .*data 'val'"):
        evaluate_run(trained_run / "best_model.pth", tmp_path / "e", ctx, data_root=other)
    m = evaluate_run(trained_run / "best_model.pth", tmp_path / "e", ctx, data_root=other, allow_data_mismatch=True, figures=False)
    assert m["n_samples"] == 5 and any("data 'test'" in p for p in m["data_mismatch_allowed"])
    assert m["random_init"] and m["weights"]["identifier"] == "simvp-incepu" and m["toy"]
    assert list(m["headline"]) == ["loc_error_px", "hit@1px", "hit@2px"]
    # the per-horizon losses, weighted by their frames, are the loss over every test frame at once
    model, cfg, _ = load_trained_model(trained_run / "best_model.pth", torch.device("cpu"))
    test = load_split(cfg, "test", root=other)
    batch = {k: torch.stack([test[i][k] for i in range(len(test))]) for k in ("inputs", "targets", "target_mask")}
    with torch.no_grad():
        whole = float(build_loss(cfg.loss)(model(batch["inputs"]), batch["targets"], batch["target_mask"]))
    n = np.array([r["n_frames"] for r in m["per_horizon"]])
    assert np.sum(n * np.array([r["loss"] for r in m["per_horizon"]])) / n.sum() == pytest.approx(whole, rel=1e-5)


def test_weights_file_is_loaded_exactly_and_its_sha256_recorded(tiny_config, tiny_data, tmp_path):
    cfg = tiny_config(tiny_data)
    own = build_model(cfg.model, (10, 1, 32, 32))
    torch.nn.init.normal_(own.dec.readout.weight)  # not what a fresh model would hold
    path = tmp_path / "my_simvp.pth"
    torch.save(own.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    fresh = build_model(cfg.model, (10, 1, 32, 32))
    source = init_weights(fresh, tiny_config(tiny_data, f"model.weights={path}").model)
    assert source.kind == "file" and source.sha256 == digest
    for k, v in own.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    run = tmp_path / "run"
    assert main(["train", "--config", "demo", "--data", str(tiny_data), "--weights", str(path), "--run-dir", str(run),
                 "--set", "loop.epochs=1", "--set", "loop.max_steps_per_epoch=1", "--device", "cpu"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["weights"][0]["sha256"] == digest and manifest["random_init"] is False
    assert f"from file {path}" in (run / "train.log").read_text()
    wrong = build_model(tiny_config(tiny_data, "model.hid_S=4").model, (10, 1, 32, 32))
    torch.save(wrong.state_dict(), tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match="wrong.pth does not fit SimVP: shape mismatches"):
        init_weights(build_model(cfg.model, (10, 1, 32, 32)), tiny_config(tiny_data, f"model.weights={tmp_path / 'wrong.pth'}").model)


def test_weights_list_says_simvp_starts_from_scratch_per_config(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for config, identifier in (("phase1", "simvp-gsta"), ("simvp_incepu", "simvp-incepu"), ("demo", "simvp-incepu")):
        line = next(line for line in out.splitlines() if line.startswith(config + " "))
        assert identifier in line and "random" in line
    assert "SimVP is trained from scratch in the study" in out
    assert main(["weights", "check"]) == 0
