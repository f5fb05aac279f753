"""Every SLURM template parses as bash, even where no Slurm can run (slurm/test_templates.py submits them)."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = sorted([*(REPO / "slurm").glob("*.sbatch"), *(REPO / "packages").glob("*/slurm/*.sbatch")])


def test_there_are_templates_for_every_package():
    owners = {p.parts[-3] for p in TEMPLATES if p.parts[-4] == "packages"}
    assert owners == {"saliency-entropy", "gaze-estimation", "sparse-video-loss", "image-rating"}


@pytest.mark.parametrize("template", [*TEMPLATES, REPO / "slurm" / "common.sh"], ids=lambda p: str(p.relative_to(REPO)))
def test_bash_syntax(template):
    proc = subprocess.run(["bash", "-n", str(template)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
