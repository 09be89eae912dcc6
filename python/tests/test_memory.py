"""No input kills the interpreter: an input whose check would need more memory than the limit
is a ValueError naming the size and the limit, raised before anything is allocated. The
issue's case (60,000 x 10,000 float32, once an 80 GB allocation, a Rust abort and SIGABRT)
runs in a subprocess, so that a regression cannot take the test runner down with it."""

import os
import subprocess
import sys

import numpy as np
import pytest

import combined_margin as cm

# Zero-stride views: an array of the shape without its memory (the check refuses on the shape).
BIG = """
import numpy as np, combined_margin as cm
cos = np.broadcast_to(np.float32(0.5), (60_000, 10_000))
labels = np.zeros(60_000, dtype=np.int64)
try:
    cm.check_layer(cos, labels, cos, profile="recommended")
except ValueError as e:
    print("VALUEERROR", e)
"""


def test_sixty_thousand_by_ten_thousand_is_a_value_error_in_a_subprocess():
    r = subprocess.run([sys.executable, "-c", BIG], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, CMARGIN_MEMORY_LIMIT=str(24 * 10**9)))
    assert r.returncode == 0, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "memory allocation" not in r.stderr and "panicked" not in r.stderr, r.stderr
    out = r.stdout
    assert out.startswith("VALUEERROR"), out + r.stderr
    # The size and the limit, in words: 6e8 elements at the bounded check's figure (SPEC.md
    # §8.5: the case is above 2^20 entries), and 24 GB.
    need = cm.check_layer_memory(600_000_000)
    for needle in ("cos (60000, 10000)", "600000000 elements", "bytes per element, plus",
                   f"{need / 1e9:.1f} GB", "memory limit of 24.0 GB",
                   "$CMARGIN_MEMORY_LIMIT", "set_memory_limit"):
        assert needle in out, (needle, out)


def test_the_limit_is_checked_by_every_entry_point():
    before = cm.memory_limit()
    try:
        cm.set_memory_limit(10**6)
        assert cm.memory_limit()[:2] == (10**6, "set_memory_limit")
        fx = cm.generate(shape=(16, 10))
        cos = np.broadcast_to(np.float32(0.5), (1000, 1000))
        labels = np.zeros(1000, dtype=np.int64)
        for call, needle in (
            (lambda: cm.check_layer(cos, labels, cos), "check_layer: cos (1000, 1000)"),
            (lambda: cm.reference(cos, labels), "reference: cos (1000, 1000)"),
            (lambda: cm.generate(shape=(1000, 1000)), "generate: shape (1000, 1000)"),
            (lambda: cm.loss_reference(cos, cos, labels), "loss_reference: features [1000, 1000]"),
            (lambda: cm.check_pipeline(cos, cos, labels, 1.0), "check_pipeline: features [1000, 1000]"),
        ):
            with pytest.raises(ValueError, match="above the memory limit of 1.0 MB") as e:
                call()
            assert needle in str(e.value), str(e.value)
        # What fits still runs.
        assert cm.check_layer(fx.cos, fx.labels, fx.forward, profile="recommended").passed
    finally:
        cm.set_memory_limit(None)
    assert cm.memory_limit()[1] == before[1]


def test_bytes_per_element_lives_in_one_place():
    """The per-element figure is the extension's one constant (python/src/memory.rs), read
    back here, not repeated."""
    import pathlib

    src = pathlib.Path(__file__).resolve().parents[1] / "src"
    hits = [p.name for p in src.glob("*.rs") if "BYTES_PER_ELEMENT: u64" in p.read_text()]
    assert hits == ["memory.rs"], hits
    assert cm.memory_limit()[2] > 0


def test_a_bounded_check_counts_its_own_figure():
    """Above 2^20 entries a check_layer is bounded (its fractions and budgets kept as arrays,
    not records) and counts fewer bytes per element plus a fixed part; up to it, the records'
    figure per element."""
    records = cm.memory_limit()[2]
    n = 1 << 20
    assert cm.check_layer_memory(n) == n * records
    for e in (n + 1, 10 * n, 600_000_000):
        assert 0 < cm.check_layer_memory(e) < e * records, e
    # The fixed part: twice the elements cost less than twice the bytes.
    assert cm.check_layer_memory(20 * n) < 2 * cm.check_layer_memory(10 * n)
