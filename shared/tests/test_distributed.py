import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from perception_shared.distributed import check_resolvable, detect_env, init_distributed, parse_slurm_nodelist
from perception_shared.errors import ConfigError
from perception_shared.samplers import EvalSampler, ShardedSampler


@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("node1", ["node1"]),
        ("gpu[01-04,07]", ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07"]),
        ("gpu[08-11]", ["gpu08", "gpu09", "gpu10", "gpu11"]),
        ("a[1-2],b3,c[5]", ["a1", "a2", "b3", "c5"]),
        ("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
        ("cn-[098-101].cluster", ["cn-098.cluster", "cn-099.cluster", "cn-100.cluster", "cn-101.cluster"]),
    ],
)
def test_slurm_nodelist_expansion(nodelist, hosts):
    assert parse_slurm_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["gpu[01-04", "gpu01]", "gpu[4-1]", "gpu[a-b]", ""])
def test_slurm_nodelist_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_slurm_nodelist(bad)


def test_detect_env_torchrun_wins_over_slurm():
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h1", "MASTER_PORT": "1234",
           "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    e = detect_env(env)
    assert (e.source, e.rank, e.world_size, e.local_rank, e.master_addr, e.master_port) == ("torchrun", 3, 8, 1, "h1", 1234)


def test_detect_env_slurm_uses_first_host_and_job_port():
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
           "SLURM_JOB_NODELIST": "gpu[03-04,07]", "SLURM_JOB_ID": "123456"}
    e = detect_env(env)
    assert (e.source, e.rank, e.world_size, e.local_rank, e.master_addr) == ("slurm", 5, 8, 1, "gpu03")
    assert e.master_port == 15000 + 123456 % 20000


def test_detect_env_single_task_slurm_job_and_plain_process_are_single():
    assert detect_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).source == "single"
    assert detect_env({}).world_size == 1


def test_detect_env_bad_value_names_the_variable():
    with pytest.raises(ConfigError, match="RANK"):
        detect_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_init_single_process_needs_no_process_group():
    ctx = init_distributed("cpu", environ={})
    assert ctx.world_size == 1 and ctx.is_main and not ctx.is_distributed and ctx.device.type == "cpu"


@pytest.mark.parametrize("n, world", [(7, 2), (10, 3), (2, 4)])
def test_eval_sampler_partitions_without_duplicates(n, world):
    parts = [list(EvalSampler(n, rank=r, world_size=world)) for r in range(world)]
    flat = sorted(i for p in parts for i in p)
    assert flat == list(range(n))


def test_sharded_sampler_equal_steps_full_cover_and_resume_offset():
    n, world = 11, 2
    samplers = [ShardedSampler(n, seed=3, rank=r, world_size=world) for r in range(world)]
    for s in samplers:
        s.set_epoch(2)
    parts = [list(s) for s in samplers]
    assert len(parts[0]) == len(parts[1]) == 6
    assert set(parts[0]) | set(parts[1]) == set(range(n))
    again = ShardedSampler(n, seed=3, rank=0, world_size=world)
    again.set_epoch(2)
    assert list(again) == parts[0]  # order is a function of (seed, epoch)
    again.set_start(4)
    assert list(again) == parts[0][4:] and len(again) == 2
    again.set_epoch(3)
    assert list(again) != parts[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo(tmp_path):
    script = Path(__file__).with_name("dist_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", PERCEPTION_NO_PROGRESS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["backend"] == "gloo" and r0["world_size"] == 2
    assert r0["mean"] == r1["mean"] == pytest.approx(3.0)  # (1+2+3+4+5)/5, not the mean of rank means
    assert sorted(r0["eval_local"] + r1["eval_local"]) == list(range(7))
    assert not set(r0["eval_local"]) & set(r1["eval_local"])
    assert r0["eval_all"] == r1["eval_all"] == list(range(7))
    assert r0["eval_doubled"] == [2.0 * i for i in range(7)]
    assert len(r0["train_local"]) == len(r1["train_local"]) == 4
    assert set(r0["train_local"]) | set(r1["train_local"]) == set(range(7))
    assert r0["run_dir"] == r1["run_dir"]
    assert r0["broadcast"] == r1["broadcast"] == {"from_rank": 0}
    assert r0["broadcast_error"] == r1["broadcast_error"] == "images/x.png: unreadable"
    # only rank 0 writes checkpoints; DDP keeps the replicas identical
    assert r1["saves"] == [] and any(s.endswith("last.pth") for s in r0["saves"])
    assert r0["params"] == r1["params"]
    run_dir = Path(r0["run_dir"])
    for name in ("train.log", "metrics.csv", "training_history.csv", "best_model.pth", "final_model.pth", "config.yaml"):
        assert (run_dir / name).exists(), name
    assert not list(run_dir.glob("*rank1*"))
    # a signal on rank 1 alone stops both ranks at the same step
    assert r0["preempted_at"] == r1["preempted_at"] == 2
    assert r0["gathered_steps"] == [2, 2]
    assert (Path(r0["run_dir"] + "_pre") / "PREEMPTED").exists()


def test_unresolvable_master_addr_is_a_clear_error_not_an_endless_retry():
    check_resolvable("localhost", "slurm")  # resolves: no error
    with pytest.raises(ConfigError, match=r"MASTER_ADDR='no-such-node\.invalid' \(from the slurm environment\)"):
        check_resolvable("no-such-node.invalid", "slurm", wait_s=0.0)  # .invalid never resolves (RFC 2606)
