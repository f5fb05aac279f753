"""Keep freed host memory in the process: glibc malloc settings that stop a CPU training step from
page-faulting its working memory in again on every step.

glibc serves allocations above its mmap threshold (adjusted at run time, at most 32 MiB on 64-bit
systems) with fresh ``mmap`` regions that ``free`` unmaps, and returns free memory at the top of the heap
to the kernel once it exceeds the trim threshold. A step of the frozen DenseNet-201 at 768x1024 creates
and frees large tensors by the hundred (its concatenations reach 50 MiB); how many of them land on
pages that must be faulted in again depends on the history of allocations, so it differs between the
regularized and the plain step, between steps and between runs: measured from 0 to 190,000 minor faults
(up to 750 MiB, 0.3-0.7 s of kernel time) per step on the development machine. That is why the
regularizer's cost measured 4% in some runs and 23% in others (``benchmarks/RESULTS.md``).

``retain_freed_host_memory`` turns ``mmap`` off for heap allocations (``M_MMAP_MAX = 0``) and raises the
trim threshold to its maximum, so freed blocks stay in the heap and are reused: no page faults once the
heap has settled (after the first steps). The process keeps its peak host memory; values and results
are unchanged (only where memory comes from changes). It is ``runtime.retain_host_memory`` in the
configs (on by default), and a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import platform

from perception_shared.logging import get_logger

log = get_logger("saliency_entropy.allocator")

# mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied = False


def retain_freed_host_memory() -> bool:
    """Apply the settings above to this process (and processes it forks later); True if applied.

    Idempotent. Returns False, with an info message, where the C library is not glibc.
    """
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.info("runtime.retain_host_memory: not glibc (%s), the allocator is left as it is", platform.libc_ver())
        return False
    libc = ctypes.CDLL("libc.so.6")
    _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX))
    return _applied
