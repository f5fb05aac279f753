# perception-lab: shared launch logic for the SLURM templates. Source it from an sbatch script, then
# call `pl_launch <console-script> <args...>`. slurm/README.md explains the templates.
#
# Variables (export them when calling sbatch; sbatch passes the submitting shell's environment on):
#   PL_LAUNCHER        torchrun (default) or srun: one srun task per GPU, each rank reading SLURM_PROCID,
#                      SLURM_NTASKS and SLURM_LOCALID (submit with --ntasks-per-node=<GPUs per node>)
#   PL_NPROC_PER_NODE  processes (GPUs) per node for torchrun; default: SLURM_GPUS_ON_NODE, else 1
#   PL_MASTER_PORT     rendezvous port; default: 15000 + job id mod 20000 (two jobs on a node don't clash)
#   PL_VENV            a virtual environment to activate first (optional)
#   PL_RUN_DIR         the run directory the command writes (pass it as --run-dir); training leaves a
#                      PREEMPTED file there when a signal stopped it after saving a checkpoint
#
# One node: `torchrun --standalone` (one process: the command itself). Several nodes: `srun` starts one
# torchrun per node and they meet at a c10d rendezvous on the first node of SLURM_JOB_NODELIST (its
# address: see pl_first_host).
# Every srun passes --cpus-per-task on: Slurm 22.05 to 23.02 do not give a step the batch job's value,
# so on a cluster that binds tasks to cores each task would otherwise run on one CPU.
#
# Signals. The training templates ask for `--signal=B:USR1@180 --requeue`: 180 s before the time limit
# Slurm sends USR1 to this batch shell (B: = the batch shell; without it the signal goes to the job
# steps, which do not requeue anything). Training stops the same way on every signal: the shell passes
# SIGTERM to the launcher, torchrun or srun hands it to every training process, which saves a
# checkpoint at the next step boundary, exits 75 and leaves PREEMPTED in its run directory. What
# happens next depends on the signal the shell got:
#   USR1 (time is nearly up; also `scancel --signal=USR1 --batch JOB`): the job requeues itself and the
#        requeued job continues through --auto-resume (also when the signal came before training could
#        save anything; not when Slurm is already ending the job);
#   TERM (`scancel JOB`, the time limit itself, `scontrol requeue JOB`, preemption by Slurm): the job
#        ends; the checkpoint stays, and a resubmission with the same run directory continues from it.
#        (`scontrol requeue` and Slurm's own preemption requeue the job themselves.)

set -uo pipefail

if [ -n "${PL_VENV:-}" ]; then
    # shellcheck disable=SC1091
    source "${PL_VENV}/bin/activate"
fi

pl_log() {
    echo "perception-lab: $(date '+%F %T') $*"
}

# The first node of the allocation, as an address that every node can reach: its host name when that
# resolves (the usual case), else the NodeAddr Slurm itself uses to reach the node (clusters whose node
# names are not in DNS, and the one-machine test cluster of tools/local_slurm.sh, where n1 is
# 127.0.0.1), else the name as it is.
pl_first_host() {
    local first addr
    first="$(scontrol show hostnames "${SLURM_JOB_NODELIST:?not inside a Slurm job}" | head -n 1)"
    if getent hosts "$first" >/dev/null 2>&1; then
        echo "$first"
        return
    fi
    addr="$(scontrol show node "$first" 2>/dev/null | grep -o 'NodeAddr=[^ ]*' | head -n 1 | cut -d= -f2)"
    echo "${addr:-$first}"
}

PL_CHILD=""
PL_SIGNAL=""
pl_on_signal() {
    # The first signal decides; the TERM Slurm sends after a requeue must not turn a USR1 into a stop.
    [ -z "$PL_SIGNAL" ] && PL_SIGNAL="$1"
    if [ -n "$PL_CHILD" ]; then
        pl_log "caught SIG$1; asking training to save a checkpoint and stop"
        kill -TERM "$PL_CHILD" 2>/dev/null
    else
        pl_log "caught SIG$1 with nothing running"
    fi
    return 0
}

# Run a command in the background so that the traps can fire while it runs; return its exit code.
pl_run() {
    trap 'pl_on_signal USR1' USR1
    trap 'pl_on_signal TERM' TERM
    "$@" &
    PL_CHILD=$!
    # wait returns early (>128) when a trapped signal arrives; keep waiting while the child lives
    while kill -0 "$PL_CHILD" 2>/dev/null; do
        wait "$PL_CHILD"
    done
    wait "$PL_CHILD"
    local rc=$?
    PL_CHILD=""
    return "$rc"
}

pl_launch() {
    local nnodes="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
    local nproc="${PL_NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}"
    local port="${PL_MASTER_PORT:-$((15000 + ${SLURM_JOB_ID:-0} % 20000))}"
    local launcher="${PL_LAUNCHER:-torchrun}"
    local cpus="${SLURM_CPUS_PER_TASK:-}"
    local srun_cpus=()
    [ -n "$cpus" ] && srun_cpus=(--cpus-per-task="$cpus")
    local rc
    # A marker from an earlier attempt must not make this one look preempted.
    [ -n "${PL_RUN_DIR:-}" ] && rm -f "${PL_RUN_DIR}/PREEMPTED"
    if [ "$launcher" = "srun" ]; then
        export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${cpus:-1}}"
        # each rank builds its process group from these (the node's name may not resolve; see pl_first_host)
        MASTER_ADDR="${MASTER_ADDR:-$(pl_first_host)}" || return 2
        export MASTER_ADDR MASTER_PORT="${MASTER_PORT:-$port}"
        pl_log "srun, ${SLURM_NTASKS:-?} tasks x ${cpus:-1} CPUs, one rank each: $*"
        pl_run srun "${srun_cpus[@]}" --kill-on-bad-exit=1 "$@"
        rc=$?
    elif [ "$launcher" != "torchrun" ]; then
        pl_log "PL_LAUNCHER must be torchrun or srun, not '${launcher}'" >&2
        return 2
    else
        # the task's CPUs are shared by the node's processes
        export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( ${cpus:-$nproc} / nproc > 0 ? ${cpus:-$nproc} / nproc : 1 ))}"
        if [ "$nnodes" -le 1 ] && [ "$nproc" -le 1 ]; then
            # one process needs no launcher: it gets the signal itself and its exit code is its own
            pl_log "1 node x 1 process: $*"
            pl_run "$@"
            rc=$?
        elif [ "$nnodes" -le 1 ]; then
            pl_log "1 node x ${nproc} processes: $*"
            pl_run torchrun --standalone --nnodes=1 --nproc_per_node="$nproc" --no-python "$@"
            rc=$?
        else
            local master
            master="$(pl_first_host)" || return 2
            pl_log "${nnodes} nodes x ${nproc} processes, rendezvous ${master}:${port}: $*"
            pl_run srun --ntasks-per-node=1 "${srun_cpus[@]}" --kill-on-bad-exit=1 \
                torchrun --nnodes="$nnodes" --nproc_per_node="$nproc" \
                --rdzv_backend=c10d --rdzv_endpoint="${master}:${port}" --rdzv_id="${SLURM_JOB_ID:-0}" \
                --no-python "$@"
            rc=$?
        fi
    fi
    pl_after "$rc"
}

# Decide what an exit means. torchrun reports any failed worker as exit 1, so the PREEMPTED marker that
# training leaves in its run directory, not the exit code alone, tells a preempted run from a failed one.
pl_after() {
    local rc="$1" preempted=""
    { [ "$rc" -eq 75 ] || { [ -n "${PL_RUN_DIR:-}" ] && [ -f "${PL_RUN_DIR}/PREEMPTED" ]; }; } && preempted=1
    if [ "$rc" -ne 0 ] && [ "$PL_SIGNAL" = "USR1" ]; then
        local state
        state="$(scontrol show job "${SLURM_JOB_ID:?not inside a Slurm job}" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)"
        if [ "$state" != "RUNNING" ]; then
            # Slurm is already ending the job (a scancel or the time limit came after the warning)
            pl_log "the job is ${state:-gone} after the warning; not requeued (resubmit with PL_RUN_DIR=${PL_RUN_DIR:-<run dir>})"
            return 75
        fi
        if [ -n "$preempted" ]; then
            pl_log "training saved a checkpoint (${PL_RUN_DIR:-}); requeueing job ${SLURM_JOB_ID:-?}"
        else
            # The signal came before training could save (still starting, say): the requeued job
            # starts from the newest checkpoint there is.
            pl_log "training stopped with exit code ${rc} before saving a checkpoint; requeueing job ${SLURM_JOB_ID:-?}"
        fi
        scontrol requeue "$SLURM_JOB_ID" || pl_log "scontrol requeue failed: resubmit to continue"
        return 75
    fi
    if [ -n "$preempted" ]; then
        pl_log "stopped by SIG${PL_SIGNAL:-TERM} after saving a checkpoint in ${PL_RUN_DIR:-the run directory}; not requeued" \
            "(Slurm itself requeues after scontrol requeue or preemption; otherwise resubmit with PL_RUN_DIR=${PL_RUN_DIR:-<run dir>})"
        return 75
    fi
    return "$rc"
}
