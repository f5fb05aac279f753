"""Every gaze figure kind in the shared style (``check_figure``), and evaluate's figures in the run's TensorBoard."""

import csv
import shutil

import numpy as np

from gaze_estimation.evaluate import evaluate, load_model
from gaze_estimation.figures import gaze_figure, history_plot, position_figure
from perception_shared.distributed import init_distributed
from perception_shared.figures import record_figures, save_figure
from perception_shared.plotting import plot_history


def test_gaze_figures_in_the_shared_style_and_logged_to_the_run(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoint_epoch_*", "final_model.pth", "last.pth"))
    with open(run / "training_history.csv", newline="") as f:
        history = [{k: float(v) if k != "epoch" else int(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    _, cfg, _ = load_model(run / "best_model.pth")
    by_position = [{"context_frames": c, "mean_deg": 5.0 - c / 4, "median_deg": 4.5 - c / 4} for c in range(1, 9)]
    with record_figures() as found:
        plot_history(history, run / "training_history.png", best_epoch=1, **history_plot(cfg))
        save_figure(position_figure(by_position, 4.0, title="error by position", sub="run x"), tmp_path / "by_position.png")
        metrics = evaluate(run / "best_model.pth", ctx=init_distributed("cpu"), out_dir=tmp_path / "eval", figure_samples=3)
    kinds = {name: str(p) for name, p in (("history", run / "training_history.png"), ("position", tmp_path / "by_position.png"),
                                          ("participants", tmp_path / "eval" / "per_participant.png"),
                                          ("examples", tmp_path / "eval" / "gaze_examples.png"))}
    assert set(kinds.values()) == set(found)
    for name in ("history", "position", "participants", "examples"):
        assert found[kinds[name]] == [], (name, found[kinds[name]])

    # the crops are RGB and each column's title gives its sample's error, as predictions.csv does
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (s, s, 3), dtype=np.uint8) for s in (224, 112, 112)]
    pred, true = np.array([[0.1, -0.2]]), np.array([[0.0, 0.0]])
    fig = gaze_figure([crops[0]], [crops[1]], [crops[2]], pred, true, ["p #0"])
    assert all(im.get_array().ndim == 3 for ax in fig.axes for im in ax.images)
    expected = np.degrees(np.arccos(np.cos(0.1) * np.cos(0.2)))  # angle between (0.1, -0.2) and straight ahead
    assert f"error {expected:.1f} deg" in fig.axes[0].get_title()

    # evaluate's figures reach the run's TensorBoard (and W&B run, disabled here) at the checkpoint's step
    events = b"".join(p.read_bytes() for p in (run / "tensorboard").rglob("events.out.tfevents.*"))
    for name in ("per_participant", "gaze_examples"):
        assert f"evaluate/{metrics['split']}/{name}".encode() in events
