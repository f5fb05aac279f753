"""All packages install together; each installs alone into a fresh venv, taking perception-shared
from this repository, and its demo (the full pipeline on synthetic data) runs there."""

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import PACKAGES, REPO, cli_env, run


def test_one_environment_holds_every_package_without_conflicts():
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ["perception-shared", *PACKAGES]:
        assert metadata.version(name)


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_console_script_and_every_subcommand_have_help(name):
    pkg = PACKAGES[name]
    out = run([pkg.script, "--help"]).stdout
    for sub in pkg.subcommands:
        assert sub in out, f"{name} --help does not mention {sub}"
    # Every subcommand's help through the console script's own entry point, in one process: a process per
    # subcommand spent ~3 s each importing torch (2 minutes of CI over the four packages).
    out = run([sys.executable, "-c", _EVERY_SUBCOMMAND_HELP, name, *pkg.subcommands]).stdout
    for sub in pkg.subcommands:
        assert f"== {sub}\nusage:" in out, f"{name} {sub} --help printed no usage:\n{out[-2000:]}"


# argv: console script name, subcommands. Prints "== SUB" then that subcommand's --help for each.
_EVERY_SUBCOMMAND_HELP = """
import sys
from importlib.metadata import entry_points

(script,) = [e for e in entry_points(group="console_scripts") if e.name == sys.argv[1]]
main = script.load()
for sub in sys.argv[2:]:
    print("==", sub, flush=True)
    try:
        main([sub, "--help"])
    except SystemExit as exit:
        if exit.code not in (0, None):
            raise
    else:
        raise AssertionError(f"{sub} --help did not exit")
"""


def _shared_source(dist: metadata.Distribution) -> str:
    direct = dist.read_text("direct_url.json")
    assert direct, f"{dist.metadata['Name']} was not installed from a direct reference"
    return json.loads(direct)["url"]


def test_perception_shared_comes_from_this_repository_not_an_index():
    shared = metadata.distribution("perception-shared")
    assert Path(_shared_source(shared).removeprefix("file://")).resolve() == (REPO / "shared").resolve()
    repo_version = {}
    exec((REPO / "shared/src/perception_shared/__init__.py").read_text(), repo_version)
    assert shared.version == repo_version["__version__"]
    for name in PACKAGES:
        reqs = [r for r in metadata.requires(name) or [] if r.startswith("perception-shared")]
        assert len(reqs) == 1 and "@ file://" in reqs[0], reqs
        assert Path(reqs[0].split("@", 1)[1].strip().removeprefix("file://")).resolve() == (REPO / "shared").resolve()


def _sane_summary(name: str, out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["package"] == name and summary["version"] == metadata.version(name)
    for label, path in summary["outputs"].items():
        assert Path(path).exists(), f"{name} demo output {label} -> {path} is missing"
    for key, value in summary["metrics"].items():
        assert value == value and abs(value) != float("inf"), f"{name} demo metric {key} is {value}"
    problems = PACKAGES[name].sane(summary["metrics"])
    assert not problems, f"{name} demo metrics out of range: {problems}"
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_fresh_venv_install_alone_and_demo(name, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    run([py, REPO / "tools" / "torch_base.py", "link"], timeout=900)
    run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", REPO / "packages" / name], timeout=900)
    installed = run([py, "-m", "pip", "list", "--format=json"]).stdout
    names = {d["name"] for d in json.loads(installed)}
    assert {name, "perception-shared"} <= names
    assert not (set(PACKAGES) - {name}) & names, "a package pulled in another package"
    out = tmp_path / "demo"
    env = cli_env(PATH=f"{venv / 'bin'}:/usr/bin:/bin", OMP_NUM_THREADS="2")
    run([venv / "bin" / name, "demo", "--out", out, "--device", "cpu"], env=env, timeout=600)
    _sane_summary(name, out)
