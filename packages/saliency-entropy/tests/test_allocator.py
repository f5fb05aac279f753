"""runtime.retain_host_memory: after the setting, a large tensor freed and allocated again is not
faulted in again (the cause of the old bimodal step times); with glibc's defaults it is."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, resource, sys, torch
from saliency_entropy.allocator import retain_freed_host_memory
applied = retain_freed_host_memory() if sys.argv[1] == "retain" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):  # 64 MiB, above glibc's largest mmap threshold: mmapped by default
    torch.ones(64 * 2**20 // 4).sum()  # (retained: the heap settles after a few rounds, as a training loop does)
blocks = []
for _ in range(3):  # the fewest faults of three blocks: a block can catch the heap still settling under load
    before = faults()
    for _ in range(3):
        torch.ones(64 * 2**20 // 4).sum()
    blocks.append(faults() - before)
print(json.dumps({"applied": applied, "faults": min(blocks)}))
"""


def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    out = {}
    for mode in ("default", "retain"):
        done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["retain"]["applied"]
    # three 64 MiB tensors = 49,152 pages of 4 KiB: faulted in every time by default, reused when retained
    assert out["default"]["faults"] > 40_000
    assert out["retain"]["faults"] < 1_000
