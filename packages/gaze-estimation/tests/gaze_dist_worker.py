"""Run under torchrun --nproc_per_node=2 by test_cli.py: train one epoch, then evaluate, in one job."""

import json
import sys
from pathlib import Path

import torch

from gaze_estimation.config import TrainConfig
from gaze_estimation.evaluate import evaluate
from gaze_estimation.train import train
from perception_shared.config import load_config, resolve_config_path
from perception_shared.distributed import init_distributed, shutdown
from perception_shared.logging import setup_logging
from perception_shared.runs import prepare_run_dir


def main(data: str, out: str) -> None:
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    sets = ["model.d_model=32", "model.num_layers=1", "figure_samples=2", "loop.epochs=1"]
    cfg = load_config(TrainConfig, resolve_config_path("gaze_estimation", "demo"), sets)
    cfg.data.root = Path(data)
    run = prepare_run_dir(run_dir=Path(out) / "run")
    setup_logging(run)
    result = train(cfg, ctx=ctx, run_dir=run)
    metrics = evaluate(run / "best_model.pth", ctx=ctx, out_dir=Path(out) / "eval")
    found = {"rank": ctx.rank, "world_size": ctx.world_size, "global_step": result.global_step, "n_samples": metrics["n_samples"]}
    (Path(out) / f"rank{ctx.rank}.json").write_text(json.dumps(found))
    shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
