"""The shared figure style: check_figure finds what a figure lacks; plot_history draws in the style."""

import matplotlib.pyplot as plt
import numpy as np

from perception_shared.figures import Quantity, check_figure, quantity, record_figures, run_status
from perception_shared.plotting import Series, history_figure, plot_history


def _history(epochs: int = 4) -> list[dict]:
    return [
        {
            "epoch": e,
            "step": 10 * e,
            "train/loss": 1.0 / e,
            "val/loss": 1.2 / e,
            "val/angular_error": 10.0 - e,
            "val/mean_predictor_error": 12.5,
            "val/n_fixations": 400.0,
            "val/bias_entropy_bits": 3.0 - 0.1 * e,
            "lr": 1e-3 * 0.1**e,
            "time_s": 2.0,
        }
        for e in range(1, epochs + 1)
    ]


def test_check_figure_names_each_missing_label_colour_bar_and_cut_title():
    fig, (a, b) = plt.subplots(1, 2, figsize=(4, 3), layout="constrained")
    a.plot([0, 1], [0, 1])
    a.set_xlabel("epoch")
    b.imshow(np.zeros((3, 3)))
    b.set_xlabel("x (px)")
    b.set_ylabel("y (px)")
    fig.suptitle("a title far too long to fit in a figure of four inches without being wrapped at all", x=0.9)
    problems = check_figure(fig)
    assert any("no y-axis label" in p for p in problems)
    assert any("image without a colour bar" in p for p in problems)
    assert any("cut off" in p for p in problems)
    assert not any("no x-axis label" in p for p in problems)
    a.set_ylabel("loss")
    bar = fig.colorbar(b.images[0], ax=b)
    assert any("colour bar without a label" in p for p in check_figure(fig))
    bar.set_label("probability")
    fig.suptitle("short")
    assert check_figure(fig) == []
    plt.close(fig)


def test_a_shared_colour_bar_serves_every_image_with_its_colour_map_and_limits():
    fig, axes = plt.subplots(1, 3, figsize=(6, 2), layout="constrained")
    images = [ax.imshow(np.random.rand(4, 4), cmap="magma", vmin=0, vmax=1) for ax in axes[:2]]
    axes[2].imshow(np.random.rand(4, 4), cmap="magma", vmin=0, vmax=2)
    for ax in axes:
        ax.axis("off")
    fig.colorbar(images[0], ax=axes).set_label("p")
    problems = check_figure(fig)
    assert problems == ["axes 2: image without a colour bar"]
    plt.close(fig)


def test_quantity_table_labels_units_and_package_keys():
    assert quantity("val/angular_error").axis_label == "angular error (deg)"
    assert quantity("ig").axis_label == "information gain (bits/fixation)"
    assert quantity("train/select_angular_error").axis_label == "select angular error (deg)"
    assert quantity("val/odd_metric").axis_label == "odd metric"
    assert quantity("mae", {"mae": Quantity("MAE", "rating units")}).axis_label == "MAE (rating units)"
    assert run_status(toy=True, random_init=True) == "TOY SETTINGS (not a research result) · RANDOM INIT"
    assert run_status() == ""


def test_history_puts_train_and_val_on_one_axis_with_units_reference_lines_and_the_best_epoch():
    fig = history_figure(
        _history(),
        run_name="run_20260101_000000",
        status=run_status(toy=True),
        series={"val/mean_predictor_error": Series("angular_error", "mean predictor")},
        constants=["val/mean_predictor_error"],
        hide=["val/bias_entropy_bits"],
        best_epoch=3,
    )
    assert check_figure(fig) == []
    panels = {ax.get_ylabel(): ax for ax in fig.axes if ax.axison}
    assert set(panels) == {"loss", "angular error (deg)", "learning rate"}
    loss = panels["loss"]
    assert [line.get_label() for line in loss.lines[:2]] == ["train", "val"]
    assert [line.get_color() for line in loss.lines[:2]] == ["tab:blue", "tab:orange"]
    error = panels["angular error (deg)"]
    reference = [line for line in error.lines if line.get_label().startswith("mean predictor")]
    assert len(reference) == 1 and set(reference[0].get_ydata()) == {12.5}
    assert all(any(list(line.get_xdata()) == [3, 3] for line in ax.lines) for ax in panels.values())
    assert panels["learning rate"].get_yscale() == "log"
    header = fig._suptitle.get_text()
    assert "run run_20260101_000000" in header and "TOY SETTINGS" in header
    # the number of fixations, the same in every epoch, is a note under the figure, not a panel
    assert "n fixations: 400" in fig._supxlabel.get_text()
    plt.close(fig)


def test_plot_history_keeps_its_old_call_and_names_the_run_by_its_folder(tmp_path):
    run = tmp_path / "run_x"
    run.mkdir()
    short = [{"epoch": e, "train/loss": 1.0 / e, "val/loss": 1.1 / e} for e in (1, 2)]
    with record_figures() as found:
        path = plot_history(short, run / "training_history.png")
    assert path.is_file() and found == {str(path): []}
    fig = history_figure(short, "a " + "very long title " * 12, run_name="run_x")
    assert check_figure(fig) == [] and "\n" in fig._suptitle.get_text()
    plt.close(fig)


def test_an_rgb_photo_needs_no_colour_bar_but_a_map_beside_it_does():
    fig, (photo, density) = plt.subplots(1, 2, figsize=(4, 2), layout="constrained")
    photo.imshow(np.random.rand(4, 4, 3))
    density.imshow(np.random.rand(4, 4))
    for ax in (photo, density):
        ax.axis("off")
    assert check_figure(fig) == ["axes 1: image without a colour bar"]
    plt.close(fig)


def test_a_run_of_one_epoch_has_whole_epoch_ticks():
    fig = history_figure([{"epoch": 1, "train/loss": 0.5, "val/loss": 0.6}])
    ticks = fig.axes[0].get_xticks()
    assert list(ticks) == [1.0]
    plt.close(fig)
