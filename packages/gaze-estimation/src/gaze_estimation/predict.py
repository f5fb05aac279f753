"""Prediction on new crops: an HDF5 file in the training format, or folders of face and eye images.

Image folders: ``INPUT/face/``, ``INPUT/leye/`` and ``INPUT/reye/`` hold one image per sample (PNG, JPEG,
BMP, ...), matched by file name stem (``face/0001.png`` goes with ``leye/0001.png`` and
``reye/0001.png``). ``leye`` is the subject's left eye (on the image's right). Crops of other sizes are
resized (antialiased) to 224 / 112 px; gray images are repeated to RGB.

Output CSV, one row per sample: ``source,sample,pitch,yaw,x,y,z`` with pitch/yaw in radians and
``(x, y, z)`` the unit vector ``pitchyaw_to_vector`` (EVE's convention: it points from the target to the
eye; the gaze direction is its negation). When every input is an HDF5 file with labels, also
``true_pitch,true_yaw,error_deg``. Camera images and videos go through ``predict-raw`` (``raw``).

A temporal run (``gazetr_temporal``) predicts causally, as on a live stream: each frame with every
earlier frame of its stream (an HDF5 file's runs of consecutive frames of one stimulus; a crop folder's
images in name order), the state carried from frame to frame (``predict_streams``).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from perception_shared.errors import DataError
from perception_shared.logging import get_logger, progress

from .data import GazeH5Dataset, to_float
from .evaluate import load_model
from .geometry import pitchyaw_to_vector
from .h5format import EYE_SIZE, FACE_SIZE
from .metrics import per_sample_errors
from .scoring import CROP_KEYS, forward_batch
from .sequences import find_runs, time_index
from .temporal import GazeTRTemporal
from .traces import pitchyaw_to_screen, write_trace_csv

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


def _dataset(src: Path) -> tuple[Dataset, list[str], np.ndarray | None]:
    """The samples of one input, their names, and their labels (HDF5 with ``gaze``) or None."""
    if src.is_file():
        dataset = GazeH5Dataset([src], require_labels=False)
        labels = dataset.gaze.astype(np.float64) if dataset.has_labels else None
        return dataset, [str(int(r)) for r in dataset.row_index], labels
    if src.is_dir():
        crops = CropFolderDataset(src)
        return crops, list(crops.stems), None
    raise DataError(f"{src}: no such HDF5 file or crop folder")


def streams(src: Path, dataset: Dataset) -> list[tuple[int, int]]:
    """``(first sample, length)`` of each continuous stream of an input, for a temporal model.

    An HDF5 file: its runs (``sequences.find_runs``: a new stimulus or a gap in ``frame_index`` starts a
    new stream; files without ``step_index``/``frame_index`` are an error). A crop folder: one stream, its
    images in name order (the frames of one video).
    """
    if isinstance(dataset, GazeH5Dataset):
        step, frame, every = time_index(src)
        return find_runs(dataset.row_index, step, frame, every)
    return [(0, len(dataset))]  # type: ignore[arg-type]


@torch.no_grad()
def predict_streams(model: GazeTRTemporal, dataset: Dataset, runs: Sequence[tuple[int, int]], *, device: torch.device, chunk: int) -> torch.Tensor:
    """``(N, 2)`` float64 predictions of a temporal model run causally over each stream of ``dataset``.

    Each stream starts from an empty state and is fed in chunks of ``chunk`` frames with the state
    carried (``GazeTRTemporal.run``): frame ``t`` sees every earlier frame of its stream, as live.
    """
    out = torch.zeros(len(dataset), 2, dtype=torch.float64)  # type: ignore[arg-type]
    for start, length in progress(runs, desc="predict streams"):
        state = None
        for a in range(start, start + length, chunk):
            items = [dataset[i] for i in range(a, min(a + chunk, start + length))]
            crops = [to_float(torch.stack([it[k] for it in items]).unsqueeze(0).to(device)) for k in CROP_KEYS]
            pred, state = model.run(*crops, state)
            out[a : a + len(items)] = pred[0].double().cpu()
    return out


def predict(
    checkpoint: str | Path,
    inputs: str | Path | Sequence[str | Path],
    out_csv: str | Path,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    num_workers: int = 0,
    trace: TraceOptions | None = None,
) -> Path:
    """Predict gaze for every sample of ``inputs`` (``.h5`` files or crop folders); writes ``out_csv``.

    One row per sample: ``source,sample,pitch,yaw,x,y,z`` and, when every input is an HDF5 file with
    labels, ``true_pitch,true_yaw,error_deg``. With ``trace``, also writes the predictions as gaze traces
    on a virtual screen (see ``traces``), one sequence per input, for sparse-video-loss's ``import-csv``.
    """
    device = torch.device(device)
    model, _, _ = load_model(checkpoint, device)
    sources = [Path(p) for p in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    parts = [(src, *_dataset(src)) for src in sources]
    with_labels = all(labels is not None for *_, labels in parts)
    header = ["source", "sample", "pitch", "yaw", "x", "y", "z"] + (["true_pitch", "true_yaw", "error_deg"] if with_labels else [])
    out = Path(out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    traces = []
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for src, dataset, names, labels in parts:
            if isinstance(model, GazeTRTemporal):
                pred = predict_streams(model, dataset, streams(src, dataset), device=device, chunk=batch_size)
            else:
                loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
                preds = []
                with torch.no_grad():
                    for batch in progress(loader, desc=f"predict {src.name}"):
                        preds.append(forward_batch(model, {k: batch[k].to(device) for k in CROP_KEYS}).float().cpu())
                pred = torch.cat(preds).double()
            vec, pred_np = pitchyaw_to_vector(pred).numpy(), pred.numpy()
            errors = per_sample_errors(pred_np, labels) if with_labels and labels is not None else None
            for j, name in enumerate(names):
                row = [str(src), name] + [f"{v:.6f}" for v in (*pred_np[j], *vec[j])]
                if errors is not None and labels is not None:
                    row += [f"{labels[j, 0]:.6f}", f"{labels[j, 1]:.6f}", f"{errors[j]:.4f}"]
                w.writerow(row)
            traces.append((src, pred_np))
            _log.info("predicted %d samples from %s", len(names), src)
    _log.info("wrote %s", out)
    if trace is not None:
        write_traces(trace, traces)
    return out


def write_traces(trace: TraceOptions, predictions: Sequence[tuple[Path, np.ndarray]]) -> Path:
    """All inputs' predictions as gaze traces on the virtual screen of ``trace``, one sequence per input."""
    sequences = [
        (src.stem, pitchyaw_to_screen(pred, width_px=trace.width_px, height_px=trace.height_px, distance_px=trace.distance_px))
        for src, pred in predictions
    ]
    write_trace_csv(trace.path, sequences, fps=trace.fps)
    _log.info("gaze trace on a %gx%g px screen at %g px -> %s", trace.width_px, trace.height_px, trace.distance_px, trace.path)
    return trace.path
