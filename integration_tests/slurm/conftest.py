"""A real Slurm cluster for the template tests: tools/local_slurm.py, started once per session.

The cluster is munged, one slurmctld and two slurmd daemons (nodes n1 and n2 on 127.0.0.1, 2 CPUs
each, tasks bound to cores), all running as root from a temporary directory and stopped by PID at the
end. Where it cannot run (not root, no apt-get to install Slurm) every test here skips and says why,
except under PL_REQUIRE_SLURM=1 (set by .ci/run), where a missing cluster is an error.

Jobs are submitted as a user would: `sbatch TEMPLATE ARGS` from a copy of the repository's template
files (what a fresh clone holds, so a missing log folder would show), overriding only what the test
cluster lacks (GPUs, CPUs, time). The test environment's bin folder comes first on PATH and sbatch
hands the environment to the job (its default --export=ALL), so jobs run the console scripts installed
in the test environment.

Two lanes keep the session short: the template jobs (`template_jobs`) queue on n1, one or two at a
time; the preemption tests, whose timing matters, have n2 to themselves. The jobs that need both nodes
are submitted first, before either lane starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .cluster import Cluster, fresh_clone, load_local_slurm
from .template_runs import Submitted, submit_template_runs


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    local_slurm = load_local_slurm()
    try:
        local_slurm.ensure_installed(install=True)
        local = local_slurm.LocalSlurm(tmp_path_factory.mktemp("slurm-cluster"), ctld_debug="debug2")
        local.start()
    except local_slurm.ClusterUnavailable as e:
        if os.environ.get("PL_REQUIRE_SLURM") == "1":
            pytest.fail(f"PL_REQUIRE_SLURM=1 but the local Slurm cluster cannot run: {e}", pytrace=False)
        pytest.skip(f"no local Slurm cluster: {e}")
    try:
        yield Cluster(local, fresh_clone(tmp_path_factory.mktemp("clone")))
    finally:
        local.stop()  # cancels jobs still queued or running, then stops the daemons by PID


@pytest.fixture(scope="session")
def template_jobs(cluster, synthetic_data, tmp_path_factory) -> dict[str, Submitted]:
    """Every shipped template, submitted once per session; the tests wait for the job they check."""
    return submit_template_runs(cluster, synthetic_data, tmp_path_factory.mktemp("template-inputs"))
