"""Prediction on new crops: an HDF5 file in the training format, or folders of face and eye images.

Image folders: ``INPUT/face/``, ``INPUT/leye/`` and ``INPUT/reye/`` hold one image per sample (PNG, JPEG,
BMP, ...), matched by file name stem (``face/0001.png`` goes with ``leye/0001.png`` and
``reye/0001.png``). ``leye`` is the subject's left eye (on the image's right). Crops of other sizes are
resized (antialiased) to 224 / 112 px; gray images are repeated to RGB.

Output CSV, one row per sample: ``sample,pitch,yaw,x,y,z`` with pitch/yaw in radians and ``(x, y, z)``
the unit vector ``pitchyaw_to_vector`` (EVE's convention: it points from the target to the eye; the gaze
direction is its negation). With labels in an HDF5 input also ``true_pitch,true_yaw,error_deg``.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from perception_shared.errors import DataError
from perception_shared.logging import get_logger, progress

from .data import EYE_SIZE, FACE_SIZE, GazeH5Dataset
from .evaluate import load_model
from .geometry import pitchyaw_to_vector
from .metrics import per_sample_errors
from .traces import pitchyaw_to_screen, write_trace_csv
from .train import forward_batch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_log = get_logger("gaze_estimation.predict")


def _read_image(path: Path, size: int) -> torch.Tensor:
    """``(3, size, size)`` uint8 RGB from an image file (resized with an antialiasing filter if needed)."""
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(rgb).transpose(2, 0, 1).copy())


class CropFolderDataset(Dataset):
    """Samples from ``face/``, ``leye/``, ``reye/`` image folders, matched by file stem (sorted)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        found: dict[str, dict[str, Path]] = {}
        for part in ("face", "leye", "reye"):
            d = self.root / part
            if not d.is_dir():
                raise DataError(f"{self.root}: missing folder '{part}/' (expected face/, leye/ and reye/ image folders)")
            images = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            dupes = sorted(s for s, c in Counter(p.stem for p in images).items() if c > 1)
            if dupes:
                raise DataError(f"{d}: several images share the name stem(s) {', '.join(dupes[:5])}")
            files = {p.stem: p for p in images}
            found[part] = files
        stems = set(found["face"])
        for part in ("leye", "reye"):
            missing = sorted(stems - set(found[part]))
            extra = sorted(set(found[part]) - stems)
            if missing:
                raise DataError(f"{self.root / part}: no image for sample(s) {', '.join(missing[:5])} that face/ has")
            if extra:
                raise DataError(f"{self.root / part}: image(s) {', '.join(extra[:5])} have no face/ counterpart")
        if not stems:
            raise DataError(f"{self.root / 'face'}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.stems = sorted(stems)
        self.paths = found

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.stems[i]
        return {
            "face": _read_image(self.paths["face"][s], FACE_SIZE),
            "leye": _read_image(self.paths["leye"][s], EYE_SIZE),
            "reye": _read_image(self.paths["reye"][s], EYE_SIZE),
            "index": i,
        }


@dataclass(frozen=True)
class TraceOptions:
    """Where and how to write predictions as a screen gaze trace (defaults: EVE's 1920x1080 screen at 60 cm)."""

    path: Path
    width_px: float = 1920.0
    height_px: float = 1080.0
    distance_px: float = 2083.0  # 600 mm at the 3.47 px/mm of a 553 mm wide 1920 px screen
    fps: float = 10.0  # EVE's basler frames after convert-eve's default --every 6


def predict(
    checkpoint: str | Path,
    input_path: str | Path,
    out_csv: str | Path,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    num_workers: int = 0,
    trace: TraceOptions | None = None,
) -> Path:
    """Predict gaze for every sample of ``input_path`` (an ``.h5`` file or a crop folder); writes ``out_csv``.

    With ``trace``, also writes the predictions as a gaze trace on a virtual screen (see ``traces``), in
    the order of the input's samples, for sparse-video-loss's ``import-csv``.
    """
    device = torch.device(device)
    model, _, _ = load_model(checkpoint, device)
    src = Path(input_path)
    labels = None
    if src.is_file():
        dataset: Dataset = GazeH5Dataset([src], require_labels=False)
        names = [str(int(r)) for r in dataset.row_index]  # type: ignore[attr-defined]
        if dataset.has_labels:  # type: ignore[attr-defined]
            labels = dataset.gaze.astype(np.float64)  # type: ignore[attr-defined]
    elif src.is_dir():
        dataset = CropFolderDataset(src)
        names = list(dataset.stems)
    else:
        raise DataError(f"{src}: no such HDF5 file or crop folder")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    preds = []
    with torch.no_grad():
        for batch in progress(loader, desc="predict"):
            preds.append(forward_batch(model, {k: batch[k].to(device) for k in ("face", "leye", "reye")}).float().cpu())
    pred = torch.cat(preds).double()
    vec = pitchyaw_to_vector(pred).numpy()
    pred_np = pred.numpy()
    header = ["sample", "pitch", "yaw", "x", "y", "z"]
    errors = None
    if labels is not None:
        header += ["true_pitch", "true_yaw", "error_deg"]
        errors = per_sample_errors(pred_np, labels)
    out = Path(out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for j, name in enumerate(names):
            row = [name] + [f"{v:.6f}" for v in (*pred_np[j], *vec[j])]
            if errors is not None:
                row += [f"{labels[j, 0]:.6f}", f"{labels[j, 1]:.6f}", f"{errors[j]:.4f}"]  # type: ignore[index]
            w.writerow(row)
    _log.info("predicted %d samples from %s -> %s", len(names), src, out)
    if trace is not None:
        points = pitchyaw_to_screen(pred_np, width_px=trace.width_px, height_px=trace.height_px, distance_px=trace.distance_px)
        write_trace_csv(trace.path, src.stem, points, fps=trace.fps)
        _log.info("gaze trace on a %gx%g px screen at %g px -> %s", trace.width_px, trace.height_px, trace.distance_px, trace.path)
    return out
