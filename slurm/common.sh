# perception-lab: shared launch logic for the SLURM templates. Source it from an sbatch script, then
# call `pl_launch <console-script> <args...>`.
#
# Variables (set them before sourcing, or export them when calling sbatch):
#   PL_LAUNCHER        torchrun (default) or srun: one srun task per GPU, each rank reading SLURM_PROCID,
#                      SLURM_NTASKS and SLURM_LOCALID (submit with --ntasks-per-node=<GPUs per node>)
#   PL_NPROC_PER_NODE  processes (GPUs) per node for torchrun; default: SLURM_GPUS_ON_NODE, else 1
#   PL_MASTER_PORT     rendezvous port; default: 15000 + job id mod 20000 (two jobs on a node don't clash)
#   PL_VENV            a virtual environment to activate first (optional)
#   PL_RUN_DIR         the run directory the command writes (pass it as --run-dir); a PREEMPTED file
#                      there after the command means "requeue me"
#
# One node: `torchrun --standalone`. Several nodes: `srun` starts one torchrun per node and they meet
# at a c10d rendezvous on the first host of SLURM_JOB_NODELIST.
#
# Preemption: templates ask for `--signal=B:USR1@180 --requeue`. The batch shell traps USR1 (and TERM)
# and passes SIGTERM on to the launcher, which hands it to every training process (torchrun and srun
# both forward SIGTERM; torchrun would die on a raw USR1). Training saves a checkpoint at the next step
# boundary, exits 75 and leaves PREEMPTED in its run directory; the job requeues itself and the requeued
# job continues from that checkpoint through --auto-resume.

set -uo pipefail

if [ -n "${PL_VENV:-}" ]; then
    # shellcheck disable=SC1091
    source "${PL_VENV}/bin/activate"
fi

pl_first_host() {
    local nodelist="${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-localhost}}"
    # Python expands compressed lists such as gpu[01-04,07] without scontrol (see perception_shared).
    python -c 'import sys; from perception_shared.distributed import parse_slurm_nodelist as p; print(p(sys.argv[1])[0])' "$nodelist"
}

PL_CHILD=""
pl_forward_signal() {
    echo "perception-lab: caught SIG$1; asking training to save a checkpoint and stop"
    [ -n "$PL_CHILD" ] && kill -TERM "$PL_CHILD" 2>/dev/null
}

# Run a command in the background so that the traps can fire while it runs; return its exit code.
pl_run() {
    trap 'pl_forward_signal USR1' USR1
    trap 'pl_forward_signal TERM' TERM
    "$@" &
    PL_CHILD=$!
    local rc=0
    while true; do
        wait "$PL_CHILD"
        rc=$?
        # wait returns early (>128) when a trapped signal arrives; keep waiting while the child lives
        kill -0 "$PL_CHILD" 2>/dev/null || break
    done
    trap - USR1 TERM
    return "$rc"
}

pl_launch() {
    local nnodes="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
    local nproc="${PL_NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}"
    local port="${PL_MASTER_PORT:-$((15000 + ${SLURM_JOB_ID:-0} % 20000))}"
    local launcher="${PL_LAUNCHER:-torchrun}"
    local rc
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
    mkdir -p logs
    if [ "$launcher" = "srun" ]; then
        echo "perception-lab: srun, ${SLURM_NTASKS:-?} tasks, one rank each: $*"
        pl_run srun --kill-on-bad-exit=1 "$@"
        rc=$?
    elif [ "$launcher" != "torchrun" ]; then
        echo "perception-lab: PL_LAUNCHER must be torchrun or srun, not '${launcher}'" >&2
        return 2
    elif [ "$nnodes" -le 1 ]; then
        echo "perception-lab: 1 node x ${nproc} processes: $*"
        pl_run torchrun --standalone --nnodes=1 --nproc_per_node="$nproc" --no-python "$@"
        rc=$?
    else
        local master
        master="$(pl_first_host)" || return 2
        echo "perception-lab: ${nnodes} nodes x ${nproc} processes, rendezvous ${master}:${port}: $*"
        pl_run srun --ntasks-per-node=1 --kill-on-bad-exit=1 \
            torchrun --nnodes="$nnodes" --nproc_per_node="$nproc" \
            --rdzv_backend=c10d --rdzv_endpoint="${master}:${port}" --rdzv_id="${SLURM_JOB_ID:-0}" \
            --no-python "$@"
        rc=$?
    fi
    # torchrun reports any failed worker as exit 1, so the PREEMPTED marker that training leaves in its
    # run directory, not the exit code alone, tells a preempted run from a failed one.
    if [ "$rc" -eq 75 ] || { [ -n "${PL_RUN_DIR:-}" ] && [ -f "${PL_RUN_DIR}/PREEMPTED" ]; }; then
        if [ -n "${SLURM_JOB_ID:-}" ] && command -v scontrol >/dev/null 2>&1; then
            echo "perception-lab: preempted; requeueing job ${SLURM_JOB_ID}"
            scontrol requeue "${SLURM_JOB_ID}"
        fi
        return 75
    fi
    return "$rc"
}
