"""Shared fixtures: the `cmargin` binary (for the CLI-equivalence tests) and the repo root.

The binary is $CMARGIN, else the workspace's target/release/cmargin (scripts/test-all.sh
builds it). Without it the CLI-equivalence tests are skipped with a reason that says so, or
fail with REQUIRE_CLI=1 (as scripts/test-all.sh sets).
"""

import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cmargin():
    path = os.environ.get("CMARGIN") or str(REPO / "target" / "release" / "cmargin")
    if not os.path.exists(path):
        if os.environ.get("REQUIRE_CLI") == "1":
            pytest.fail(f"REQUIRE_CLI=1 but the cmargin binary is missing at {path}")
        pytest.skip(f"needs the cmargin binary (cargo build --release, or set CMARGIN); not at {path}")

    def run(*args, cwd=None):
        return subprocess.run([path, *map(str, args)], capture_output=True, text=True, cwd=cwd)

    return run


def require_torch():
    """torch, or a visible skip; with REQUIRE_TORCH=1 (CI) a missing torch fails instead."""
    try:
        import torch
    except ImportError:
        if os.environ.get("REQUIRE_TORCH") == "1" or os.environ.get("REQUIRE_FRAMEWORKS") == "1":
            pytest.fail("REQUIRE_TORCH=1 (or REQUIRE_FRAMEWORKS=1) but torch is not installed")
        pytest.skip("needs torch (pip install torch)", allow_module_level=True)
    return torch


def require_framework(name):
    """The framework module (torch, jax, tensorflow, ml_dtypes), or a visible skip; with
    REQUIRE_FRAMEWORKS=1 (CI) a missing one fails instead (REQUIRE_TORCH=1 does so for torch)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("REQUIRE_FRAMEWORKS") == "1" or (name == "torch" and os.environ.get("REQUIRE_TORCH") == "1"):
            pytest.fail(f"REQUIRE_FRAMEWORKS=1 but {name.split('.')[0]} is not installed")
        top = name.split(".")[0]
        pip = {"jax": "jax[cpu]", "tensorflow": "tensorflow-cpu"}.get(top, top)
        pytest.skip(f"needs {top} (pip install {pip})")
