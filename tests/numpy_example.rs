//! examples/validate_numpy_cli.py end to end: generate .npz fixtures, compute outputs with a
//! numpy-only implementation, write them back, and have `cmargin check` accept the correct
//! ones and reject the planted porting bug. Needs python3 with numpy, so it is ignored by a
//! plain `cargo test`; .ci/run installs numpy and runs it with `--ignored`.

use std::process::Command;

#[test]
#[ignore = "needs python3 with numpy: .ci/run runs it with --ignored where numpy imports"]
fn numpy_round_trip_through_cmargin_check() {
    let has_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(has_numpy, "needs python3 with numpy (import numpy failed)");
    let dir = crate::common::ScratchDir::new("numpy-example");
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/validate_numpy_cli.py"
        ))
        .args(["--cmargin", env!("CARGO_BIN_EXE_cmargin"), "--workdir"])
        .arg(&dir)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The planted bug was rejected, and the check named why.
    assert!(
        stdout.contains("angle clamp lost") && stdout.contains("angle-policy-differs"),
        "{stdout}"
    );
    assert!(stdout.contains("all verdicts as expected"));
}
