"""dvtoolbox.device: keep_freed_memory stops the page faults of reused tensor memory (glibc), in a fresh process."""

import os
import platform
import re
import subprocess
import sys

import pytest

CODE = """
import resource, sys, torch
from dvtoolbox.device import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def work():  # tensors of the sizes of a loop's (1.2 to 6.4 MB), alive together, then freed
    live = [torch.ones(n, dtype=torch.float64) for n in (150_000, 300_000, 450_000, 600_000, 150_000, 800_000)]
    return sum(float(t[0]) for t in live)
for _ in range(3):
    work()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    work()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode):
    """(applied, page faults) of the workload in a fresh process that starts with glibc's mmap threshold fixed at
    128 KiB (no dynamic adjustment: every tensor's pages come fresh from the system and go back when freed)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, check=True, env=env)
    applied, count = out.stdout.split()
    return applied == "True", int(count)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_freed_memory_reuses_freed_tensors_without_page_faults():
    applied, with_keep = faults("keep")
    _, without = faults("system")
    assert applied
    assert without >= 20 * 4000  # 20 x 19.6 MB of fresh pages
    # glibc's heap may still grow once while the 20 rounds run (about one round's pages, 4,700, in some runs; 0 in
    # most): not every round, as without
    assert with_keep * 15 <= without


# ------------------------------------------------------------------------------------- the warning filters

TORCH_TF32_ADVISORIES = [  # as PyTorch 2.9-2.11 word them (inductor's compile_fx, ATen's Context.cpp)
    "TensorFloat32 tensor cores for float32 matrix multiplication available but not enabled. Consider setting "
    "`torch.set_float32_matmul_precision('high')` for better performance.",
    "Please use the new API settings to control TF32 behavior, such as torch.backends.cudnn.conv.fp32_precision = "
    "'tf32' or torch.backends.cuda.matmul.fp32_precision = 'ieee'. Old settings, e.g, "
    "torch.backends.cuda.matmul.allow_tf32 = True, torch.backends.cudnn.allow_tf32 = True, allowTF32CuDNN() and "
    "allowTF32CuBLAS() will be deprecated after Pytorch 2.9.",
]


@pytest.mark.parametrize("message", TORCH_TF32_ADVISORIES)
def test_setup_cfg_lets_torchs_tf32_advisories_through(message):
    """tests/gpu runs under setup.cfg's filters (warnings are errors): these two advisories are ignored."""
    import warnings

    warnings.warn(message, UserWarning)  # raises here without setup.cfg's two ignore lines


@pytest.mark.parametrize("message", ["TensorFloat32 is not enabled", "Please use the new API for something else",
                                     "TF32: Please use the new API settings to control TF32 behavior"])
def test_setup_cfg_keeps_other_warnings_errors(message):
    import warnings

    with pytest.raises(UserWarning, match=re.escape(message)):
        warnings.warn(message, UserWarning)
