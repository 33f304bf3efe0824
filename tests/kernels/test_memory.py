"""kernels.memory.keep_freed_memory: after it, a large block freed and allocated again reuses
mapped pages (no page faults), on glibc; elsewhere it reports False and changes nothing."""
import platform
import resource

import numpy as np
import pytest

from minillm.kernels.memory import keep_freed_memory


def _faults_of_a_step_of_temporaries():
    """Page faults while a training step's kind of temporaries (3 to 64 MB) are made and freed."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for shape in ((2048, 384), (2048, 1024), (8192, 384), (2048, 8192)):
        a = np.empty(shape, dtype=np.float32)
        a.fill(1.0)                                                      # touch every page
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc",
                    reason="mallopt thresholds are glibc's")
def test_freed_blocks_are_reused_without_page_faults():
    # (how many faults the default costs depends on the kernel: transparent huge pages map 2 MB
    # at a time; the training step measured 67,000 4 KB faults per step)
    assert keep_freed_memory() is True
    _faults_of_a_step_of_temporaries()                   # the first round grows the heap
    assert _faults_of_a_step_of_temporaries() < 50       # 64 MB would be 16384 pages of 4 KB


@pytest.mark.parametrize("bad", [0, -5, 2**31, 1.5, True, "1"])
def test_bad_size_is_an_error_naming_it(bad):
    with pytest.raises(ValueError, match="max_bytes"):
        keep_freed_memory(bad)
