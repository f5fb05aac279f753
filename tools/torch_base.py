"""Share one torch installation between all test and demo environments.

torch + torchvision are ~5.5 GB; installing them into each tox/nox environment would take most of the
CI budget. This script keeps ONE base virtual environment holding only torch and torchvision (and what
they pull in) and links it into other environments with a ``.pth`` file, which appends the base's
site-packages to ``sys.path`` *after* the environment's own, so each environment still installs and
sees its own dependencies first.

    python tools/torch_base.py ensure          # create the base if needed, print its site-packages
    python tools/torch_base.py link            # link the base into the running interpreter's env
    python tools/torch_base.py pip-install ARGS  # link, then `python -m pip install ARGS` (tox's install_command)

The base lives in $PERCEPTION_TORCH_BASE, default <repo>/.venvs/torch-base.
"""

from __future__ import annotations

import configparser
import fcntl
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1"]
PTH_NAME = "_perception_torch_base.pth"


def base_dir() -> Path:
    return Path(os.environ.get("PERCEPTION_TORCH_BASE", REPO / ".venvs" / "torch-base")).resolve()


def _site_packages(venv: Path) -> Path:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    )
    return Path(out.stdout.strip())


def ensure() -> Path:
    """Create the base venv with torch and torchvision once (under a lock: tox may run envs in parallel)."""
    base = base_dir()
    base.parent.mkdir(parents=True, exist_ok=True)
    with open(base.parent / ".torch-base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = base / ".ready"
        if not ready.exists():
            print(f"torch_base: creating {base} with {' '.join(TORCH_REQUIREMENTS)} (once)", file=sys.stderr)
            # venv uses the base interpreter even when run from inside another venv
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(base)], check=True)
            subprocess.run(
                [str(base / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 *TORCH_REQUIREMENTS],
                check=True,
            )
            ready.write_text(" ".join(TORCH_REQUIREMENTS) + "\n")
    return _site_packages(base)


def _console_scripts(site: Path) -> dict[str, str]:
    """``name -> module:function`` of the console scripts of the distributions in the base (torchrun, ...)."""
    scripts: dict[str, str] = {}
    for ep_file in sorted(site.glob("*.dist-info/entry_points.txt")):
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # script names are case-sensitive
        parser.read(ep_file)
        if parser.has_section("console_scripts"):
            scripts.update(parser.items("console_scripts"))
    return scripts


def link() -> Path:
    site = ensure()
    if sys.prefix == sys.base_prefix:
        raise SystemExit("torch_base: refusing to link into a non-virtual-environment Python")
    target = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    target.write_text(str(site) + "\n")
    # Console scripts such as torchrun live in the base's bin/; give this environment its own, run by its
    # own interpreter, as an installed torch would.
    bindir = Path(sysconfig.get_paths()["scripts"])
    for name, ref in _console_scripts(site).items():
        module, _, func = ref.partition(":")
        script = bindir / name
        if not script.exists():
            script.write_text(
                f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n"
            )
            script.chmod(0o755)
    return target


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("ensure", "link", "pip-install"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "ensure":
        print(ensure())
        return 0
    link()
    if argv[0] == "pip-install":
        return subprocess.run([sys.executable, "-m", "pip", "install", *argv[1:]]).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
