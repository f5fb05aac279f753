"""Predict the mean rating of every dimension for new images with a trained checkpoint.

Inputs are folders (their images, not recursive), image files, or ``.txt`` lists of image paths. The
output CSV has one row per image: ``image`` (the path), then one column per dimension holding the
predicted mean rating in the units of the training CSV (the standardized network output mapped back
with the checkpoint's target scaler). A second CSV, ``<name>_summary.csv``, gives per dimension the
count, mean, sd, min, median and max of the predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.distributed import resolve_device
from perception_shared.errors import DataError
from perception_shared.logging import get_logger
from perception_shared.samplers import make_eval_loader

from .data import RatingImageDataset, list_images, probe_images
from .evaluate import load_trained, run_inference
from .report import TOY_NOTE, describe_weights
from .transforms import build_eval_transform

log = get_logger("image_rating.predict")


def summary_frame(predictions: pd.DataFrame, dimensions: Sequence[str]) -> pd.DataFrame:
    """Per dimension: n, mean, sd (ddof=1), min, median, max of the predicted ratings."""
    cols = predictions[list(dimensions)]
    return pd.DataFrame(
        {
            "dimension": list(dimensions),
            "n": len(cols),
            "mean": cols.mean().to_numpy(),
            "sd": cols.std(ddof=1).to_numpy(),
            "min": cols.min().to_numpy(),
            "median": cols.median().to_numpy(),
            "max": cols.max().to_numpy(),
        }
    )


def predict_images(
    run: str | Path,
    inputs: Sequence[str | Path],
    *,
    out_csv: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int = 0,
    skip_bad: bool = False,
) -> pd.DataFrame:
    """Predicted ratings (rating units) for the images in ``inputs`` by the model of ``run`` (a run
    directory, whose best checkpoint is used, or a checkpoint file); written to ``out_csv`` when given.

    Unreadable images fail with one error listing them all, or with ``skip_bad`` are skipped and counted.
    """
    dev = resolve_device(device)
    trained = load_trained(run, dev)
    dims = list(trained.scaler.dimensions)
    paths = list_images(inputs)
    probes = probe_images(paths)
    policy = BadInputPolicy(skip=skip_bad)
    policy.report_all("predict inputs", [(p.path, p.problem) for p in probes if p.problem], len(paths), "images")
    paths = [p.path for p in probes if not p.problem]
    if not paths:
        raise DataError("every input image is unreadable; nothing to predict")

    pre = trained.preprocessing
    dataset = RatingImageDataset(paths, None, build_eval_transform(pre), decode_min_size=pre.resize_size)
    loader = make_eval_loader(
        dataset,
        batch_size or trained.config.data.eval_batch_size,
        num_workers=num_workers,
        pin_memory=dev.type == "cuda",
    )
    idx, z = run_inference(trained.model, loader, dev, desc="predict")
    ratings = trained.scaler.inverse_transform(z[torch.argsort(idx)].double().numpy())
    df = pd.DataFrame(ratings, columns=dims)
    df.insert(0, "image", [str(p) for p in paths])
    if out_csv is not None:
        out = Path(out_csv)
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False, float_format="%.8g")
        summary_frame(df, dims).to_csv(out.with_name(out.stem + "_summary.csv"), index=False, float_format="%.6g")
        log.info(
            "predicted %d image(s) with %s (backbone %s%s) -> %s%s",
            len(df),
            trained.checkpoint,
            describe_weights(trained.weights),
            f"; {TOY_NOTE}" if trained.toy else "",
            out,
            f"; {policy.summary()}" if policy.count else "",
        )
    return df
