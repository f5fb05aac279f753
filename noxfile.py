"""perception-lab sessions: demo, tests, bench, lint.

    nox -s demo    every package's pipeline end to end on its synthetic data, tiny, on CPU
    nox -s tests   the tox environments: shared, the four packages, integration
    nox -s bench   every package's benchmark scripts; JSON into benchmark_outputs/
    nox -s gpu_check   tools/gpu_check.py on one CUDA GPU (pass --device cpu for the dry run)
    nox -s lint    ruff

torch and torchvision come from one shared base environment (tools/torch_base.py), not once per session.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PACKAGES = ["saliency-entropy", "gaze-estimation", "sparse-video-loss", "image-rating"]
TOX_ENVS = ["shared", *PACKAGES, "integration"]

nox.options.sessions = ["demo"]
nox.options.reuse_existing_virtualenvs = True


def _install_all(session: nox.Session) -> None:
    session.run("python", str(ROOT / "tools" / "torch_base.py"), "link")
    session.install(str(ROOT / "shared"), *(str(ROOT / "packages" / p) for p in PACKAGES))
    # a rebuilt wheel of an unchanged version is not reinstalled by pip; force our own code to be current
    session.install("--no-deps", "--force-reinstall", str(ROOT / "shared"), *(str(ROOT / "packages" / p) for p in PACKAGES))


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """Run each package's demo (make-synthetic -> train -> evaluate -> report) and print a summary."""
    _install_all(session)
    out_root = ROOT / "demo_outputs"
    selected = session.posargs or PACKAGES
    env = {"PERCEPTION_NO_PROGRESS": "1", "MPLBACKEND": "Agg"}
    for pkg in selected:
        session.run(pkg, "demo", "--out", str(out_root / pkg), "--device", "cpu", env=env)
    lines = []
    for pkg in selected:
        summary = json.loads((out_root / pkg / "summary.json").read_text())
        lines.append(f"{pkg} {summary['version']}: {summary['seconds']:.0f} s, outputs in {out_root / pkg}")
        for key, value in summary["metrics"].items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"    {key:<36} {shown}")
    session.log("demo summary\n" + "\n".join(lines))


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Every tox environment in turn (pass tox env names to run only those)."""
    session.install("tox>=4.11")
    envs = session.posargs or TOX_ENVS
    session.run("tox", "run", "-c", str(ROOT / "tox.ini"), "-e", ",".join(envs))


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Every package's benchmark scripts; results as JSON in benchmark_outputs/.

    The side-by-side references come from their own sources: pysaliency from PyPI (saliency-entropy's
    ``bench`` extra), the original SimVP from a checkout named by $SIMVP_REF_PATH.
    """
    _install_all(session)
    session.install(f"{ROOT / 'packages' / 'saliency-entropy'}[bench]")
    out = ROOT / "benchmark_outputs"
    out.mkdir(exist_ok=True)
    for pkg in PACKAGES:
        for script in sorted((ROOT / "packages" / pkg / "benchmarks").glob("*.py")):
            if script.name == "vs_reference.py" and not os.environ.get("SIMVP_REF_PATH"):
                session.warn(f"skipping {script}: set SIMVP_REF_PATH to a checkout of the original SimVP/OpenSTL")
                continue
            session.run("python", str(script), "--out", str(out / f"{pkg}-{script.stem}.json"), env={"PERCEPTION_NO_PROGRESS": "1"})


@nox.session(name="gpu_check", python="3.11")
def gpu_check(session: nox.Session) -> None:
    """Every package's research-size model for a few bf16 steps on the GPU, sync-checked; JSON report."""
    _install_all(session)
    out = ROOT / "benchmark_outputs"
    out.mkdir(exist_ok=True)
    args = session.posargs or ["--device", "cuda"]
    session.run("python", str(ROOT / "tools" / "gpu_check.py"), *args, "--out", str(out / "gpu_check.json"))


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "shared", "packages", "integration_tests", "tools", "noxfile.py")
