//! Command-line values: negative numbers reach the validation (which names the parameter)
//! instead of clap's "unexpected argument"; `plot` writes SVG only and refuses other names.

use std::process::Command;

fn cmargin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cmargin"))
        .args(args)
        .output()
        .expect("cmargin runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scratch path as text, in a directory of its own removed when the guard drops.
struct ArgPath(crate::common::Scratch);

impl std::ops::Deref for ArgPath {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.s()
    }
}

impl AsRef<std::path::Path> for ArgPath {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for ArgPath {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

fn scratch(name: &str) -> ArgPath {
    ArgPath(crate::common::Scratch::new("cli-args", name))
}

#[test]
fn negative_numbers_are_values_not_flags() {
    let out = scratch("neg.json");
    let syn = ["loss", "--synthetic", "--n", "4", "--c", "10", "--d", "8"];
    for (args, needle) in [
        (
            vec!["generate", "--params", "-1,0,0", "-o", &out],
            "m1 = -1",
        ),
        (vec!["generate", "--scale", "-64", "-o", &out], "s = -64"),
        (
            vec!["generate", "--shape", "-1,3", "-o", &out],
            "--shape \"-1,3\"",
        ),
        (vec!["plot", "--params", "-1,0,0", "-o", &out], "m1 = -1"),
        (vec!["kinks", "--params", "-1,0,0"], "m1 = -1"),
        ([&syn[..], &["--params", "-1,0,0"]].concat(), "m1 = -1"),
        ([&syn[..], &["--scale", "-64"]].concat(), "s = -64"),
    ] {
        let (rc, _, err) = cmargin(&args);
        assert_eq!(rc, 2, "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
    }
    // A negative value that is valid is taken: a factor range reaching below zero.
    let svg = scratch("neg.svg");
    let (rc, _, err) = cmargin(&["plot", "--factor-range", "-10,10", "--force", "-o", &svg]);
    assert_eq!(rc, 0, "{err}");
}

#[test]
fn plot_writes_svg_only() {
    for name in ["x.png", "x", "x.svg.png"] {
        let p = scratch(name);
        let _ = std::fs::remove_file(&p);
        let (rc, _, err) = cmargin(&["plot", "-o", &p]);
        assert_eq!(rc, 2, "{name}: {err}");
        assert!(err.contains("only SVG is written"), "{name}: {err}");
        assert!(
            !std::path::Path::new(&p).exists(),
            "{name}: nothing written"
        );
    }
    let p = scratch("x.SVG");
    let (rc, _, err) = cmargin(&["plot", "--force", "-o", &p]);
    assert_eq!(rc, 0, "{err}");
    assert!(std::fs::read_to_string(&p).unwrap().starts_with("<svg"));
}

/// Every command's bad inputs not covered by a test of their own (SPEC.md §7.8): exit 2,
/// one line on stderr naming the flag or file and the problem, no panic.
#[test]
fn bad_inputs_of_every_command_exit_2_with_one_line() {
    let out = scratch("bad.json");
    let exists = scratch("exists.svg");
    std::fs::write(&exists, "x").unwrap();
    let exists_json = scratch("exists.json");
    std::fs::write(&exists_json, "x").unwrap();
    // .npz inputs for loss, written by ndarray-npy (an independent writer).
    let npz = |name: &str, f: &dyn Fn(&mut ndarray_npy::NpzWriter<std::fs::File>)| {
        let p = scratch(name);
        let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&p).unwrap());
        f(&mut w);
        w.finish().unwrap();
        p
    };
    let d_mismatch = npz("d_mismatch.npz", &|w| {
        w.add_array("features", &ndarray::Array2::<f64>::ones((2, 4)))
            .unwrap();
        w.add_array("weights", &ndarray::Array2::<f64>::ones((3, 5)))
            .unwrap();
        w.add_array("labels", &ndarray::arr1(&[0i64, 1])).unwrap();
    });
    let no_arrays = npz("no_arrays.npz", &|w| {
        w.add_array("x", &ndarray::arr1(&[1.0f64])).unwrap();
    });
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/golden/insightface-torch/cosface_f32.json"
    );
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["check", "--allow", "nonesuch", golden], vec!["--allow \"nonesuch\"", "unknown deviation"]),
        (vec!["generate", "--profile", "nonesuch", "-o", &out], vec!["--profile", "nonesuch"]),
        (vec!["generate", "--dtype", "f128", "-o", &out], vec!["--dtype \"f128\": expected f64, f32, f16 or bf16"]),
        (vec!["generate", "--inputs", "gaussian", "-o", &out], vec!["--inputs \"gaussian\""]),
        (vec!["generate", "--top-diff", "zeros", "-o", &out], vec!["--top-diff \"zeros\""]),
        (vec!["generate", "--params", "1,0.5", "-o", &out], vec!["--params \"1,0.5\"", "expected 3"]),
        (vec!["generate", "-o", "x.txt"], vec!["--out x.txt", "must be .json or .npz"]),
        (vec!["generate", "-o", &exists_json], vec![&exists_json, "exists; pass --force"]),
        (vec!["plot", "--factor-range", "4,2", "--force", "-o", &exists], vec!["factor range [4, 2]"]),
        (vec!["plot", "--profile", "analytic,caffe-cpu,caffe-gpu,detached,arcface-thmm,arcface-thmm-easy,recommended,analytic,caffe-cpu", "--force", "-o", &exists], vec!["at most"]),
        (vec!["plot", "--profile", "nonesuch", "--force", "-o", &exists], vec!["--profile", "nonesuch"]),
        (vec!["plot", "-o", &exists], vec![&exists, "exists; pass --force"]),
        (vec!["kinks", "--profile", "nonesuch"], vec!["nonesuch"]),
        (vec!["kinks", "--dtype", "f128"], vec!["--dtype \"f128\""]),
        (vec!["kinks", "--params", "1,0.5"], vec!["--params", "three numbers"]),
        (vec!["loss", "--input", &d_mismatch], vec![&d_mismatch, "field \"weights\"", "D = 4"]),
        (vec!["loss", "--input", &no_arrays], vec![&no_arrays, "needs arrays \"cos\""]),
        (vec!["loss"], vec!["give --input FILE.npz or --synthetic"]),
        (vec!["loss", "--synthetic", "--profile", "nonesuch"], vec!["--profile", "nonesuch"]),
    ];
    for (args, needles) in cases {
        let (rc, _, err) = cmargin(&args);
        assert_eq!(rc, 2, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
        for n in needles {
            assert!(err.contains(n), "{args:?}: expected {n:?} in {err}");
        }
    }
}
