"""The examples a user copies run as printed: examples/validate_numpy.py (the numpy loop on
the package, with its planted bug rejected) and examples/test_my_margin.py (under pytest)."""

import subprocess
import sys

from conftest import REPO


def test_validate_numpy_example():
    r = subprocess.run([sys.executable, str(REPO / "examples" / "validate_numpy.py")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "angle clamp lost" in r.stdout and "angle-policy-differs" in r.stdout
    assert "all verdicts as expected" in r.stdout


def test_my_margin_example_under_pytest():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(REPO / "examples" / "test_my_margin.py")],
                       capture_output=True, text=True, cwd=str(REPO / "examples"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed" in r.stdout and " failed" not in r.stdout
