import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Tests use a private kernel cache, never the user's ~/.cache/graphc.
os.environ.setdefault("GRAPHC_CACHE_DIR", tempfile.mkdtemp(prefix="graphc-test-cache-"))

from graphc.codegen.targets import TARGETS as _TABLE  # noqa: E402

# Every target that runs on this machine, read from the target table (the default, llvm, included);
# device targets are tested through their simulator and PTX in test_cuda.py.
TARGETS = [name for name, t in _TABLE.items() if not t.device]


@pytest.fixture(autouse=True, scope="session")
def _parallel_kernels_for_every_size():
    """The parallel target runs its prange kernel even on the small arrays of tests."""
    from graphc.codegen import numba_cpu

    old = numba_cpu.PARALLEL_MIN
    numba_cpu.PARALLEL_MIN = 1
    yield
    numba_cpu.PARALLEL_MIN = old
