#!/usr/bin/env bash
# A real Slurm cluster on this machine (munged, slurmctld, slurmd n1 and n2 on 127.0.0.1, 2 CPUs each),
# to try a template before queueing on a real cluster. Needs root; installs slurmctld, slurmd,
# slurm-client and munge with apt-get when they are missing. State, config and logs live in
# $PL_SLURM_DIR (default: /tmp/perception-lab-slurm); nothing is written to /etc.
#   tools/local_slurm.sh up        start it; prints the SLURM_CONF to export
#   tools/local_slurm.sh status    daemons, sinfo, squeue
#   tools/local_slurm.sh env       the export line: eval "$(tools/local_slurm.sh env)"
#   tools/local_slurm.sh down      stop the daemons it started (by PID)
# slurm/README.md shows a template submitted to it.
set -euo pipefail
exec python3 "$(dirname "$0")/local_slurm.py" "$@"
