"""`python -m podium.train --help` and `--cfg job` answer without importing the heavy stack."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "timm", "lightning", "pandas")

PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("IMPORTED", [m for m in %r if m in sys.modules]))
sys.argv = ["podium.train", *%r]
runpy.run_module("podium.train", run_name="__main__")
"""


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"]])
def test_cli_answers_without_heavy_imports(args):
    proc = subprocess.run([sys.executable, "-c", PROBE % (HEAVY, args)],
                          capture_output=True, text=True, timeout=120)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("IMPORTED"))
    assert line == "IMPORTED []", proc.stderr[-2000:]
    assert "experiment" in proc.stdout  # it did answer: the config groups / the job config
