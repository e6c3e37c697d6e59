"""The C heap of a CPU run: keep freed memory for the next step instead of returning it to the kernel.

With glibc's defaults a block above the mmap threshold (dynamic: from 128 KiB, raised towards
32 MiB as such blocks are freed) comes from a fresh mmap and is unmapped when freed, and the heap's
free top is returned to the kernel above the trim threshold (twice the mmap threshold). A CPU step
that allocates the same large temporaries again (FF-CNN's 128-filter spectral layers: 30-40 MiB
stage buffers per evaluation pass, and many smaller ones) then page-faults them in again, every pass.
`keep_freed_memory` fixes the threshold at glibc's maximum (32 MiB) and turns trimming off (both are
needed: either alone measured no faster), so freed blocks up to 32 MiB are reused. FF-CNN's goodness
inference at 128 filters ran 1.48x the img/s and the first FF-CNN run's system time fell from 260 to
49 s (benchmarks/studies/ffcnn-cpu-inference/heap.txt); its peak resident
memory rose 16%. The same as MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ / MALLOC_TOP_PAD_ in
the environment, for a process that did not set them.

With trimming off, the heap's high-water mark only rises: over 50 epochs Hinton's FF held 4% more resident
memory at the end while the bytes in use stayed flat (docs/results.md, "Memory over a long run").
`release_freed_memory`, once an epoch after validation, hands the free part back (glibc's malloc_trim):
the next epoch's first steps fault their temporaries in once, and a long run's resident memory follows what
it uses.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h) and the values set: name -> (parameter, value)
SETTINGS = {
    "thr": (-3, 32 * 2**20),  # M_MMAP_THRESHOLD: glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit)
    "pad": (-2, 256 * 2**20),  # M_TOP_PAD: the heap grows by at least this much at a time
    "trim": (-1, 2**31 - 1),  # M_TRIM_THRESHOLD (an int): never trim the heap's free top
}
OFF_ENV = "FFVISION_KEEP_FREED_MEMORY"  # "0": leave the C heap at its defaults
_kept = False  # whether keep_freed_memory applied its settings in this process


def mallopt(names: list[str]) -> bool:
    """Apply the SETTINGS named (in order) through glibc's mallopt; whether every one was accepted (False off glibc)."""
    try:
        fn = ctypes.CDLL(None).mallopt  # the process's own libc: no library search at start-up
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(fn(*SETTINGS[n]) == 1 for n in names)


def keep_freed_memory() -> bool:
    """Tune glibc's heap so freed blocks are reused (see the module docstring); whether it was applied.

    Skipped off Linux/glibc, when FFVISION_KEEP_FREED_MEMORY=0, or when the process set any of
    glibc's MALLOC_* variables itself.
    """
    if not sys.platform.startswith("linux") or os.environ.get(OFF_ENV, "1") == "0":
        return False
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ) or "GLIBC_TUNABLES" in os.environ:
        return False
    global _kept
    _kept = mallopt(["thr", "pad", "trim"])
    return _kept


def release_freed_memory() -> bool:
    """Give the C heap's free memory back to the kernel (glibc's malloc_trim) where keep_freed_memory keeps it;
    whether it did. Once an epoch: the high-water mark of the heap no longer ratchets up over a long run."""
    if not _kept:
        return False
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False
