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

fn scratch(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("cmargin-cli-args-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name).display().to_string()
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
