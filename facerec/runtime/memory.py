"""The C allocator during training and embedding on a CPU: freed activations kept for the next step."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt's parameters (glibc's malloc.h) and glibc's defaults for them.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD = 128 * 1024
DEFAULT_MMAP_MAX = 65536

_depth = 0  # kept_freed_memory contexts entered and not left (in this process)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (raises AttributeError where the libc is not glibc's)
    except (OSError, AttributeError):
        return None
    return libc


@contextmanager
def kept_freed_memory() -> Iterator[None]:
    """Within: glibc's malloc keeps the memory freed for reuse instead of handing it back to the kernel.

    A training step on a CPU allocates and frees gigabytes of activations. glibc gives every
    block over 32 MB an mmap of its own and unmaps it when freed, so each step faults every
    page in again and the kernel zeroes it: SFace at batch 64 takes about a million page faults
    a step, a fifth of the step's CPU time on a 2-core EPYC VM. Within this context the heap
    grows to a step's peak once and is reused (the process holds that peak, which the step
    reaches anyway); on leaving, glibc's defaults are back and the kept memory is returned.
    Where the C library is not glibc (macOS, musl) nothing changes.
    """
    libc = _glibc()
    global _depth
    if libc is None or _depth:  # nested (an embedding inside a training): the outer context decides
        yield
        return
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, -1)  # read as a size_t: the largest, never trim
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
