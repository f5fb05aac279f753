"""A stand-in for SLURM's `srun` on one machine, for the template tests.

It starts the command once per task with the variables srun gives each task (SLURM_PROCID,
SLURM_LOCALID, SLURM_NODEID), forwards SIGTERM/SIGUSR1 to the tasks as srun does, and exits with the
first non-zero task exit code. `--ntasks-per-node=K` means K tasks on each of SLURM_JOB_NUM_NODES
simulated nodes; without it, SLURM_NTASKS tasks on one node. Other options are ignored.
"""

import os
import signal
import subprocess
import sys


def main() -> int:
    args = sys.argv[1:]
    per_node = None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt.startswith("--ntasks-per-node="):
            per_node = int(opt.split("=", 1)[1])
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", "1"))
    if per_node is None:
        ntasks = int(os.environ.get("SLURM_NTASKS", "1"))
        per_node = max(ntasks // nodes, 1)
    else:
        ntasks = per_node * nodes
    procs = []
    for task in range(ntasks):
        env = dict(os.environ, SLURM_PROCID=str(task), SLURM_LOCALID=str(task % per_node),
                   SLURM_NODEID=str(task // per_node), SLURM_NTASKS=str(ntasks), SLURM_STEP_NUM_TASKS=str(ntasks))
        procs.append(subprocess.Popen(args, env=env))

    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGUSR1, forward)
    codes = [p.wait() for p in procs]
    return next((c for c in codes if c != 0), 0)


if __name__ == "__main__":
    sys.exit(main())
