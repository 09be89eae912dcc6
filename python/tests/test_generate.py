"""`generate` gives the CLI's fixture: the same arrays and byte-identical files."""

import numpy as np
import pytest

import combined_margin as cm

ARGSETS = [
    dict(),
    dict(profile="caffe-gpu", params=(1.0, 0.3, 0.2), inputs="edges", dtype="f64"),
    dict(profile="arcface-thmm", s=64.0, shape=(32, 7), inputs="realistic", dim=128, seed=9,
         top_diff="ones", ignore_every=3),
    dict(profile="detached", params=(1.0, 0.0, 0.35), inputs="edges", shape=(5, 3)),
]


def cli_args(kw):
    a = ["--profile", kw.get("profile", "recommended")]
    m = kw.get("params", (1.0, 0.5, 0.0))
    a += ["--params", ",".join(repr(float(v)) for v in m)]
    if "s" in kw:
        a += ["--scale", repr(kw["s"])]
    if "shape" in kw:
        a += ["--shape", f"{kw['shape'][0]},{kw['shape'][1]}"]
    for k, flag in (("dtype", "--dtype"), ("seed", "--seed"), ("inputs", "--inputs"),
                    ("dim", "--dim"), ("top_diff", "--top-diff"), ("ignore_every", "--ignore-every")):
        if k in kw:
            a += [flag, str(kw[k])]
    return a


@pytest.mark.parametrize("k", range(len(ARGSETS)))
def test_files_are_byte_identical_to_the_cli(cmargin, tmp_path, k):
    kw = ARGSETS[k]
    cli_json, cli_npz = tmp_path / "cli.json", tmp_path / "cli.npz"
    r = cmargin("generate", *cli_args(kw), "-o", cli_json, "-o", cli_npz)
    assert r.returncode == 0, r.stderr
    py_json, py_npz = tmp_path / "py.json", tmp_path / "py.npz"
    fx = cm.generate(**kw, out=[str(py_json), str(py_npz)])
    assert py_json.read_bytes() == cli_json.read_bytes()
    assert py_npz.read_bytes() == cli_npz.read_bytes()
    assert fx.to_npz() == cli_npz.read_bytes()
    # And the arrays are what the file holds.
    f = np.load(cli_npz)
    for name in ("cos", "labels", "top_diff", "forward", "backward"):
        got = getattr(fx, name)
        assert got.dtype == f[name].dtype and np.array_equal(got.tobytes(), f[name].tobytes()), name
    assert fx.name == str(f["name"])


def test_existing_files_need_force(tmp_path):
    p = tmp_path / "x.npz"
    cm.generate(out=str(p))
    before = p.read_bytes()
    with pytest.raises(FileExistsError, match="exists; pass force=True"):
        cm.generate(seed=2, out=str(p))
    assert p.read_bytes() == before
    cm.generate(seed=2, out=str(p), force=True)
    assert p.read_bytes() != before
    with pytest.raises(ValueError, match="the extension must be .json or .npz"):
        cm.generate().write(str(tmp_path / "x.txt"))


def test_the_edges_default_shape_covers_the_catalogue():
    fx = cm.generate(profile="caffe-gpu", inputs="edges")
    total, placed = fx.catalogue
    assert total > 0 and placed == total and fx.shape[1] == 10
