"""Run under torchrun --nproc_per_node=2 by test_distributed.py; each rank writes its findings as JSON."""

import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import perception_shared.checkpoint as checkpoint_mod
from perception_shared.distributed import (
    all_gather_object,
    gather_by_index,
    get_rank,
    init_distributed,
    main_then_broadcast,
    shutdown,
)
from perception_shared.errors import DataError, UserError
from perception_shared.logging import setup_logging
from perception_shared.metrics import MeanDict
from perception_shared.preemption import Preempted
from perception_shared.runs import prepare_run_dir
from perception_shared.samplers import make_eval_loader, make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.training import LoopConfig, StepOutput, Trainer


def main(out_dir: str) -> None:
    ctx = init_distributed("cpu")
    torch.set_num_threads(1)
    found: dict = {"rank": ctx.rank, "world_size": ctx.world_size, "backend": ctx.backend}

    # exact means with uneven counts: rank 0 sees 1,2,3 and rank 1 sees 4,5
    md = MeanDict()
    values = [1.0, 2.0, 3.0] if ctx.rank == 0 else [4.0, 5.0]
    md.update({"v": sum(values) / len(values)}, n=len(values))
    found["mean"] = md.reduce()["v"]

    # evaluation: every sample exactly once, in dataset order after gathering
    ds = TensorDataset(torch.arange(7).float())
    loader = make_eval_loader(ds, batch_size=2)
    seen = [int(i) for (b,) in loader for i in b]
    idx, doubled = gather_by_index(torch.tensor(seen), torch.tensor(seen) * 2.0)
    found["eval_local"] = seen
    found["eval_all"] = idx.tolist()
    found["eval_doubled"] = doubled.tolist()

    # training sampler: same number of steps on every rank, all samples covered
    tl = make_train_loader(ds, batch_size=2, seed=0)
    tl.sampler.set_epoch(1)
    found["train_local"] = list(iter(tl.sampler))

    # work done once on rank 0 reaches every rank; its user error is raised on every rank
    found["broadcast"] = main_then_broadcast(lambda: {"from_rank": get_rank()})

    def failing():
        raise DataError("images/x.png: unreadable")

    try:
        main_then_broadcast(failing)
        found["broadcast_error"] = None
    except DataError as e:
        found["broadcast_error"] = str(e)

    # one run directory name for all ranks
    run_dir = prepare_run_dir(Path(out_dir) / "runs")
    found["run_dir"] = str(run_dir)

    # DDP training: only rank 0 saves checkpoints and writes logs; parameters stay in sync
    saves = []
    real_save = checkpoint_mod.atomic_save
    checkpoint_mod.atomic_save = lambda obj, path: saves.append(str(path)) or real_save(obj, path)
    setup_logging(run_dir)
    seed_everything(0)
    x = torch.randn(24, 3)
    y = x.sum(dim=1, keepdim=True)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(m, batch, info):
        xb, yb = batch
        return StepOutput(((m(xb) - yb) ** 2).mean(), n=len(xb))

    def evaluate(m, epoch):
        md = MeanDict()
        for xb, yb in make_eval_loader(TensorDataset(x, y), batch_size=5):
            md.update({"loss": ((m(xb) - yb) ** 2).mean()}, n=len(xb))
        return md.reduce()

    trainer = Trainer(
        model=model, optimizer=opt, train_loader=make_train_loader(TensorDataset(x, y), 4, seed=0),
        step_fn=step, eval_fn=evaluate, loop=LoopConfig(epochs=2, monitor="val/loss"), ctx=ctx,
        run_dir=run_dir, config={"test": True},
    )
    result = trainer.fit()
    found["saves"] = saves
    found["params"] = [p.detach().flatten().tolist() for p in model.parameters()]
    found["val_loss"] = result.history[-1]["val/loss"]

    # preemption seen by one rank stops both at the same step
    model2 = nn.Linear(3, 1)
    trainer2 = Trainer(
        model=model2, optimizer=torch.optim.SGD(model2.parameters(), lr=0.1),
        train_loader=make_train_loader(TensorDataset(x, y), 4, seed=0),
        step_fn=lambda m, b, info: (trainer2.preemption.request("SIGTERM") if ctx.rank == 1 and info.step == 1 else None) or step(m, b, info),
        loop=LoopConfig(epochs=2, log_every=1), ctx=ctx, run_dir=Path(str(run_dir) + "_pre"), config={},
    )
    try:
        trainer2.fit()
        found["preempted_at"] = None
    except Preempted:
        found["preempted_at"] = trainer2.global_step
    found["gathered_steps"] = all_gather_object(trainer2.global_step)
    checkpoint_mod.atomic_save = real_save
    (Path(out_dir) / f"rank{ctx.rank}.json").write_text(json.dumps(found))
    shutdown()


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
