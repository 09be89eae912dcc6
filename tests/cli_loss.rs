//! `cmargin loss --input`: the same limit-checked `.npz` reader as `check` (a huge declared
//! shape, NaN, a deflated file, a file that is not a zip), the params a fixture records (used,
//! or a disagreeing flag refused), positional decimals that round-trip and gradient norms, all against a
//! closed form computed here (analytic profile: target cos(acos(c) + m2) − m3, no clamp).

use ndarray::{arr1, Array2};
use ndarray_npy::NpzWriter;
use std::io::{Cursor, Write};
use std::path::Path;
use std::process::Command;

fn scratch(name: &str) -> crate::common::Scratch {
    crate::common::Scratch::new("cli-loss", name)
}

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

/// The number printed after `label` (first token), as text.
fn printed<'a>(stdout: &'a str, label: &str) -> &'a str {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{stdout}"));
    line[line.find(label).unwrap() + label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
}

/// Asserts exit 2, one stderr line, no panic or abort, and every needle in it.
fn bad(args: &[&str], needles: &[&str]) {
    let (rc, _, err) = cmargin(args);
    assert_eq!(rc, 2, "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("memory allocation"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected {n:?} in {err}");
    }
}

/// An NPY 1.0 array with a hand-written header.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn stored_zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, b) in entries {
        z.start_file(*name, o).unwrap();
        z.write_all(b).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn write_npz(name: &str, f: impl FnOnce(&mut NpzWriter<std::fs::File>)) -> crate::common::Scratch {
    let p = scratch(name);
    let mut w = NpzWriter::new(std::fs::File::create(&p).unwrap());
    f(&mut w);
    w.finish().unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_huge_declared_shape_is_refused_before_allocation() {
    // 10^12 x 10^6 float64 declared, 8 bytes present: the old reader tried to allocate it.
    let bytes = stored_zip(&[
        (
            "cos.npy",
            npy(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 1000000), }",
                &[0u8; 8],
            ),
        ),
        (
            "labels.npy",
            npy(
                "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }",
                &[0u8; 8],
            ),
        ),
    ]);
    let p = scratch("huge.npz");
    std::fs::write(&p, bytes).unwrap();
    bad(
        &["loss", "--input", s(&p)],
        &[s(&p), "field \"cos\"", "exceeds the limit of"],
    );
    // Within the element limit but longer than the data: truncated, not read past the end.
    let bytes = stored_zip(&[(
        "cos.npy",
        npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4000, 4000), }",
            &[0u8; 64],
        ),
    )]);
    std::fs::write(&p, bytes).unwrap();
    bad(
        &["loss", "--input", s(&p)],
        &[s(&p), "field \"cos\"", "truncated"],
    );
}

#[test]
fn non_finite_inputs_are_refused_with_array_and_index() {
    let p = write_npz("nan_cos.npz", |w| {
        let mut cos = Array2::<f64>::from_elem((3, 4), 0.25);
        cos[[1, 2]] = f64::NAN;
        w.add_array("cos", &cos).unwrap();
        w.add_array("labels", &arr1(&[0i64, 1, 2])).unwrap();
    });
    bad(
        &["loss", "--input", s(&p)],
        &[s(&p), "field \"cos\"", "element 6 (row 1, column 2) is NaN"],
    );
    let p = write_npz("inf_weights.npz", |w| {
        w.add_array("features", &Array2::<f32>::ones((2, 3)))
            .unwrap();
        let mut wt = Array2::<f32>::ones((5, 3));
        wt[[4, 0]] = f32::NEG_INFINITY;
        w.add_array("weights", &wt).unwrap();
        w.add_array("labels", &arr1(&[0i32, 4])).unwrap();
    });
    bad(
        &["loss", "--input", s(&p)],
        &[
            s(&p),
            "field \"weights\"",
            "element 12 (row 4, column 0) is -inf",
        ],
    );
    let p = write_npz("label.npz", |w| {
        w.add_array("cos", &Array2::<f64>::zeros((2, 3))).unwrap();
        w.add_array("labels", &arr1(&[0i64, 3])).unwrap();
    });
    bad(
        &["loss", "--input", s(&p)],
        &[s(&p), "field \"labels\"", "element 1 (row 1) is 3"],
    );
}

/// The analytic loss and ‖d loss / d cos‖₂ of `cos` [N, C], computed here from the
/// definitions: z_ij = s·c_ij off target, s·(cos(acos(c) + m2) − m3) on target (m1 = 1);
/// loss = mean over valid rows of lse(z_i) − z_iy; d loss / d c_ij = (s/V)(p_ij − [j = y])
/// times the target's factor sin(θ + m2)/sin θ on target.
fn analytic(cos: &[f64], c: usize, labels: &[i64], m2: f64, m3: f64, s: f64) -> (f64, f64) {
    let valid = labels.iter().filter(|&&l| l >= 0).count() as f64;
    let (mut loss, mut g2) = (0.0, 0.0);
    for (i, &l) in labels.iter().enumerate() {
        if l < 0 {
            continue;
        }
        let row = &cos[i * c..(i + 1) * c];
        let y = l as usize;
        let th = row[y].acos();
        let z: Vec<f64> = (0..c)
            .map(|j| {
                if j == y {
                    s * ((th + m2).cos() - m3)
                } else {
                    s * row[j]
                }
            })
            .collect();
        let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - zmax).exp()).sum();
        let lse = zmax + sum.ln();
        loss += lse - z[y];
        for (j, &zj) in z.iter().enumerate() {
            let p = (zj - lse).exp();
            let g = if j == y {
                (s / valid) * (p - 1.0) * ((th + m2).sin() / th.sin())
            } else {
                (s / valid) * p
            };
            g2 += g * g;
        }
    }
    (loss / valid, g2.sqrt())
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn a_fixture_s_params_are_used_printed_with_17_digits_with_gradient_norms() {
    let p = scratch("fixture.npz");
    let (rc, _, err) = cmargin(&[
        "generate",
        "--profile",
        "analytic",
        "--params",
        "1,0.5,0.1",
        "--scale",
        "30",
        "--shape",
        "6,7",
        "--dtype",
        "f64",
        "--ignore-every",
        "3",
        "--force",
        "-o",
        s(&p),
    ]);
    assert_eq!(rc, 0, "{err}");
    // The fixture's inputs, read back by an independent reader (ndarray-npy).
    let mut z = ndarray_npy::NpzReader::new(std::fs::File::open(&p).unwrap()).unwrap();
    let cos: Array2<f64> = z.by_name("cos.npy").unwrap();
    let labels: ndarray::Array1<i64> = z.by_name("labels.npy").unwrap();
    let (want_loss, want_g) = analytic(
        cos.as_slice().unwrap(),
        7,
        labels.as_slice().unwrap(),
        0.5,
        0.1,
        30.0,
    );

    let (rc, out, err) = cmargin(&["loss", "--input", s(&p)]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("profile analytic (from file)"), "{out}");
    assert!(
        out.contains("(m1, m2, m3) = (1, 0.5, 0.1), s = 30 (params from file, s from file)"),
        "{out}"
    );
    let loss_text = printed(&out, "loss (mean over valid rows)");
    // Positional (a loss of a few nats: no exponent), and no digit short: the text is
    // the shortest that reads back as its f64, so nothing that tells two f64 apart is lost.
    assert!(!loss_text.contains('e'), "positional: {loss_text}");
    let loss: f64 = loss_text.parse().unwrap();
    assert_eq!(format!("{loss}"), loss_text, "shortest round-trip digits");
    let int_digits = loss_text
        .split('.')
        .next()
        .unwrap()
        .trim_start_matches('-')
        .len();
    let frac_digits = loss_text.split('.').nth(1).map_or(0, str::len);
    assert!(
        int_digits + frac_digits >= 15,
        "at least 15 significant digits for a non-round loss: {loss_text}"
    );
    assert!(rel(loss, want_loss) < 1e-13, "{loss} vs {want_loss}");
    let g: f64 = printed(&out, "|d loss / d cos|_2").parse().unwrap();
    assert!(rel(g, want_g) < 1e-12, "{g} vs {want_g}");
    let max: f64 = printed(&out, "max |d loss / d cos_ij|").parse().unwrap();
    assert!(max > 0.0 && max <= g, "{max} {g}");

    // Flags that repeat the file's values are accepted; disagreeing ones are refused.
    let (rc, out2, err) = cmargin(&[
        "loss",
        "--input",
        s(&p),
        "--params",
        "1,0.5,0.1",
        "--scale",
        "30",
        "--profile",
        "analytic",
    ]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(printed(&out2, "loss (mean over valid rows)"), loss_text);
    bad(
        &["loss", "--input", s(&p), "--params", "1,0.3,0.2"],
        &[s(&p), "field \"params\"", "(1, 0.5, 0.1)", "1,0.3,0.2"],
    );
    bad(
        &["loss", "--input", s(&p), "--scale", "64"],
        &[s(&p), "field \"s\"", "30", "--scale 64"],
    );
    bad(
        &["loss", "--input", s(&p), "--profile", "recommended"],
        &[s(&p), "field \"profile\"", "\"analytic\"", "recommended"],
    );
}

#[test]
fn features_and_weights_give_their_gradient_norms() {
    let p = write_npz("fw.npz", |w| {
        let x = Array2::from_shape_fn((3, 4), |(i, j)| ((i * 4 + j) as f64 * 0.7).sin());
        let wt = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 4 + j) as f64 * 1.3).cos());
        w.add_array("features", &x).unwrap();
        w.add_array("weights", &wt).unwrap();
        w.add_array("labels", &arr1(&[0i64, -1, 4])).unwrap();
    });
    let (rc, out, err) = cmargin(&["loss", "--input", s(&p), "--scale", "8"]);
    assert_eq!(rc, 0, "{err}");
    for label in ["|d loss / d features|_2", "|d loss / d weights|_2"] {
        let v: f64 = printed(&out, label).parse().unwrap();
        assert!(v.is_finite() && v > 0.0, "{label}: {out}");
    }
}

#[test]
fn deflated_and_misnamed_files_are_read_by_content() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let (rc, stored, err) = cmargin(&["loss", "--input", s(&data.join("numpy_savez_filled.npz"))]);
    assert_eq!(rc, 0, "{err}");
    let (rc, deflated, err) = cmargin(&[
        "loss",
        "--input",
        s(&data.join("numpy_savez_compressed.npz")),
    ]);
    assert_eq!(rc, 0, "{err}");
    let body = |t: &str| {
        t.lines()
            .skip(1)
            .filter(|l| !l.ends_with(" s"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&stored), body(&deflated));
    // An .npz named .json is an .npz; a JSON file is not, whatever its name.
    let p = scratch("npz_named.json");
    std::fs::copy(data.join("numpy_savez_filled.npz"), &p).unwrap();
    let (rc, out, err) = cmargin(&["loss", "--input", s(&p)]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(body(&out), body(&stored));
    let q = scratch("json_named.npz");
    std::fs::write(&q, "{\"format\": \"golden-dump/1\"}").unwrap();
    bad(
        &["loss", "--input", s(&q)],
        &[s(&q), "not an .npz", "zip magic"],
    );
}
