"""ValidationReport: the validate-data report every package prints and writes as JSON."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from perception_shared.jsonio import write_json
from perception_shared.validation import ValidationReport, collecting_policy, report_and_exit


def test_a_report_without_problems():
    r = ValidationReport(Path("/data/x"), "training format", files=4, seconds=0.5)
    r.sections["train"] = {"participants": 3, "samples": 96}
    assert r.ok and r.ms_per_unit == 125.0
    assert r.text().splitlines() == [
        "validate-data /data/x (training format): 4 file(s) read in 0.50 s (125.00 ms per file)",
        "  train: participants 3, samples 96",
        "no problems found",
    ]
    assert r.to_dict() == {
        "ok": True, "path": "/data/x", "kind": "training format", "files": 4, "seconds": 0.5, "problems": [],
        "warnings": [], "sections": {"train": {"participants": 3, "samples": 96}}, "ms_per_file": 125.0,
    }  # fmt: skip


def test_a_report_with_problems_and_warnings_lists_each_and_writes_json(tmp_path):
    r = ValidationReport(tmp_path, "csv trace", seconds=0.25)
    r.problems += ["a.csv, line 3: non-numeric x", "b.csv: cannot be read"]
    r.warnings.append("c.csv: no samples")
    r.sections["a.csv"] = {"path": tmp_path / "a.csv", "range": (0, 1)}
    assert not r.ok and r.ms_per_unit == 0.0  # nothing read: no division by zero
    lines = r.text().splitlines()
    assert lines[1:] == [
        f"  a.csv: path {tmp_path / 'a.csv'}, range (0, 1)",
        "WARNING c.csv: no samples",
        "PROBLEM a.csv, line 3: non-numeric x",
        "PROBLEM b.csv: cannot be read",
        "2 problem(s), 1 warning(s)",
    ]
    back = json.loads(write_json(tmp_path / "r.json", r.to_dict()).read_text())
    assert back["ok"] is False and back["problems"] == r.problems and back["warnings"] == r.warnings
    assert back["sections"]["a.csv"] == {"path": str(tmp_path / "a.csv"), "range": [0, 1]}


def test_a_subclass_adds_its_fields_and_unit():
    @dataclass
    class ImageReport(ValidationReport):
        rows: int = 0
        unit: ClassVar[str] = "image"

    r = ImageReport(Path("d"), "ratings", files=8, seconds=0.004, rows=7)
    d = r.to_dict()
    assert d["rows"] == 7 and d["ms_per_image"] == 0.5 and "ms_per_file" not in d and "unit" not in d
    assert "8 image(s) read" in r.text() and "(0.50 ms per image)" in r.text()


def test_collecting_policy_keeps_every_problem_and_raises_none(caplog):
    policy = collecting_policy()
    policy.report(Path("x.mat"), "truncated")
    policy.report_all("f.csv", [("f.csv, line 2", "bad"), ("f.csv, line 5", "worse")], total=9)
    assert policy.skipped == ["x.mat: truncated", "f.csv, line 2: bad", "f.csv, line 5: worse"]
    assert caplog.records == []  # the report lists them; nothing is printed twice


def test_report_and_exit_prints_writes_json_only_when_asked_and_gives_the_exit_status(tmp_path, capsys):
    good = ValidationReport(tmp_path, "directory", files=2, seconds=0.1)
    assert report_and_exit(good) == 0
    assert capsys.readouterr().out.rstrip().endswith("no problems found")
    assert not list(tmp_path.iterdir())  # no JSON without a path
    bad = ValidationReport(tmp_path, "directory", problems=["x.h5: missing gaze"])
    assert report_and_exit(bad, tmp_path / "report.json") == 1
    assert "PROBLEM x.h5: missing gaze" in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["problems"] == ["x.h5: missing gaze"]
