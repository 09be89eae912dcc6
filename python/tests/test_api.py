"""The package's surface: dir(cm) shows the API, not the modules it imports (np, Dict, List
were exposed); verbose output tells a Python user the Python argument (max_elements=N), not
the CLI-only --max-elements flag."""

import numpy as np

import combined_margin as cm


def test_dir_shows_the_api_only():
    public = [n for n in dir(cm) if not n.startswith("_")]
    for leaked in ("np", "Dict", "List", "Optional", "Sequence", "Tuple", "Union", "Iterable", "annotations"):
        assert leaked not in public, public
    assert set(cm.__all__) <= set(public)
    extra = set(public) - set(cm.__all__) - {"ProfileLike", "Params"}
    assert not extra, extra


def test_verbose_names_the_python_argument():
    fx = cm.generate(dtype="f64", inputs="uniform", shape=(64, 10))
    fwd = fx.forward.copy()
    rows = np.nonzero(fx.labels != -1)[0]
    # Every target off by a different amount (one constant would be a fitted m3, a named
    # cause): more than max_elements unexplained.
    fwd[rows, fx.labels[rows]] += 0.25 * (1 + rows % 7)
    r = cm.check_layer(fx.cos, fx.labels, fwd, profile="recommended", verbose=True)
    text = str(r)
    assert "--max-elements" not in text, text
    assert "(max_elements=N lists more)" in text, text
    r2 = cm.check_layer(fx.cos, fx.labels, fwd, profile="recommended", verbose=True, max_elements=1000)
    assert "lists more" not in str(r2) and str(r2).count("\n") > text.count("\n")
