"""Tests that submit the SLURM templates to a real Slurm cluster (see conftest.py).

This file makes the folder a package, so that its conftest is imported as ``slurm.conftest`` and the
name ``conftest`` keeps meaning integration_tests/conftest.py for every test module.
"""
