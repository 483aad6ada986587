import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, seed, settings

sys.path.insert(0, str(Path(__file__).parent))

# Tests use a private kernel cache, never the user's ~/.cache/graphc.
os.environ.setdefault("GRAPHC_CACHE_DIR", tempfile.mkdtemp(prefix="graphc-test-cache-"))

from graphc.backends.targets import DEFAULT_TARGET  # noqa: E402
from graphc.backends.targets import TARGETS as _TABLE  # noqa: E402

# Every target that runs on this machine, read from the target table (the default, llvm, included);
# device targets are tested through their simulator and PTX in test_cuda.py.
TARGETS = [name for name, t in _TABLE.items() if not t.device]
# Those of them that run tensor programs (shapes, reductions, matmul).
TENSOR_TARGETS = [name for name, t in _TABLE.items() if t.tensors and not t.device]


def on_every_target(cases, ids, sample=4):
    """Parameters (*case, target) for each case on every host target. The fast tier runs every
    case on the reference (numpy) and the default target, and every `sample`-th case on each
    other target (Numba's cpu and parallel compile for a second or so a case; staggered, so they
    run different cases; a threaded target, whose loop body is another's, only the first case); the
    rest is marked slow."""
    params = []
    for k, (case, name) in enumerate(zip(cases, ids)):
        for i, t in enumerate(TARGETS):
            threads = bool(_TABLE[t].options.get("parallel"))
            slow = t not in ("numpy", DEFAULT_TARGET) and ((k + i) % sample != 0 or (threads and k > 0))
            params.append(pytest.param(*case, t, id=f"{name}-{t}", marks=[pytest.mark.slow] if slow else []))
    return params


# Every host target, those whose per-element code is another's run on more threads (parallel: cpu's
# loop body under prange) in the slow tier only: the numerics they test are the same code.
TARGETS_THREADS_SLOW = [pytest.param(t, marks=pytest.mark.slow) if _TABLE[t].options.get("parallel") else t
                        for t in TARGETS]
TENSOR_TARGETS_THREADS_SLOW = [pytest.param(t, marks=pytest.mark.slow) if _TABLE[t].options.get("parallel") else t
                               for t in TENSOR_TARGETS]


# The fuzzers' Hypothesis settings: no deadline (a compile can take a second), the quick sweep
# derandomized (the same cases every run).
FUZZ = settings(deadline=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
                phases=[Phase.explicit, Phase.generate, Phase.shrink])


def fuzz(tier: str, examples: int):
    """FUZZ with `examples` cases: the quick sweep's are derandomized (the same every run),
    the long sweep is seeded by its size, so it does not start with the quick sweep's cases."""
    def apply(test):
        test = settings(FUZZ, max_examples=examples)(test)
        return seed(examples)(test) if tier == "long" else test
    return apply


def tiers(quick, long):
    """A sweep's two sizes as test parameters: `quick` runs in the test command (the fast
    tier), `long` is marked slow and runs with `-m slow` (.ci/run's second tier)."""
    return [pytest.param(quick, id="quick"), pytest.param(long, id="long", marks=pytest.mark.slow)]


@pytest.fixture(autouse=True, scope="session")
def _parallel_kernels_for_every_size():
    """Threaded kernels run even on the small arrays of tests: the parallel target's
    prange loop and llvm's split over its thread pool (tests of the single-thread
    entries take `one_thread`)."""
    from graphc.backends import targets

    old = targets.set_parallel_min(1)
    yield
    targets.set_parallel_min(old)


@pytest.fixture
def one_thread():
    """The shipped threshold: small calls take the single-thread paths (llvm's C entries)."""
    from graphc.backends import targets

    old = targets.set_parallel_min(1 << 17)
    yield
    targets.set_parallel_min(old)


def fd_grad(f, x, h=1e-6):
    """Central differences of a scalar function f at the float64 array x (a test reference)."""
    x = np.asarray(x, dtype=float)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, dn = x.copy(), x.copy()
        up[i] += h
        dn[i] -= h
        g[i] = (f(up) - f(dn)) / (2 * h)
    return g
