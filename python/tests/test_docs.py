"""docs/frameworks.md runs as printed: every ```python block, in a fresh interpreter, with the
framework its first line names (``# framework: torch``); a block whose framework is missing is
skipped visibly (a failure with REQUIRE_FRAMEWORKS=1)."""

import re
import subprocess
import sys

import pytest

from conftest import REPO, require_framework

DOC = REPO / "docs" / "frameworks.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def _id(i_block):
    i, block = i_block
    m = re.match(r"# framework: (\w+)", block)
    return f"{i}-{m.group(1) if m else 'none'}"


def test_every_block_names_its_framework():
    assert len(BLOCKS) >= 6
    for b in BLOCKS:
        assert re.match(r"# framework: (torch|jax|tensorflow|numpy)\n", b), b[:80]
    text = DOC.read_text()
    for fw in ("torch", "jax", "tensorflow", "numpy"):
        assert any(b.startswith(f"# framework: {fw}") for b in BLOCKS), fw
    assert "autocast" in text


@pytest.mark.parametrize("block", list(enumerate(BLOCKS)), ids=_id)
def test_doc_example_runs(block):
    _, code = block
    fw = re.match(r"# framework: (\w+)", code).group(1)
    if fw != "numpy":
        require_framework(fw)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
