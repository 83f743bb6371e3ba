"""torchdet.runtime: the allocator setting is applied where it can be, and does what it says."""
import platform
import subprocess
import sys

import pytest

from torchdet import runtime

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A forward's pattern: activations of several sizes above glibc's 32 MiB mmap cap, alive together,
# then freed; repeated. Prints the page faults of the rounds after the first.
_FAULTS = """
import resource, sys, torch
if sys.argv[1] == "tuned":
    from torchdet.runtime import tune_cpu_allocator
    assert tune_cpu_allocator(respect_env=False)
def forward():
    acts = []
    for mib in (40, 48, 56, 64):
        t = torch.empty(mib * 2**20 // 4)
        t.fill_(1.0)
        acts.append(t)
    del acts
forward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    forward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_tuned_allocator_reuses_large_blocks_instead_of_fresh_pages():
    pages = 3 * (40 + 48 + 56 + 64) * 2**20 // 4096
    default = _faults("default")
    assert default > 0.9 * pages  # every block is a fresh mmap, every round
    # Tuned, the blocks come back from the heap. One may still be re-faulted now and then: the
    # 64-byte-aligned allocations ask for a little more than a freed block of the same size holds.
    assert _faults("tuned") < 0.5 * default


def test_environment_turns_it_off(monkeypatch):
    monkeypatch.setenv(runtime.ENV_VAR, "0")
    assert runtime.tune_cpu_allocator() is False


def test_bad_thresholds_are_named():
    with pytest.raises(ValueError, match="thresholds must be positive"):
        runtime.tune_cpu_allocator(mmap_threshold_mib=0, respect_env=False)


@pytest.mark.parametrize("command, tuned", [("demo", True), ("models", False), ("benchmark", False)])
def test_cli_commands_that_run_models_tune_it(monkeypatch, command, tuned):
    import importlib

    from torchdet import cli

    calls = []
    monkeypatch.setattr(runtime, "tune_cpu_allocator", lambda **kw: calls.append(kw) or True)
    # Stand-in for the command itself, so only the dispatch runs.
    monkeypatch.setattr(importlib.import_module(f"torchdet.cli.{command}"), "run", lambda args: 0)
    assert cli.main([command]) == 0
    assert len(calls) == int(tuned)
