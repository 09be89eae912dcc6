//! `cmargin generate` with margin families (SPEC.md §7.5, §11): every family flag round trips
//! (generate → check PASS, JSON and `.npz` giving the same report), the per-row values
//! written are the drawn ones, bad values are refused in one line, and one generated number
//! per family agrees with its closed form computed here.

use combined_margin::fixture::generate::{
    generate_family, Family, Inputs, MarginParam, RowMargin, RowValues, Spec, TopDiff,
};
use combined_margin::fixture::{read_dump, read_layer_npz, write_layer_npz, LayerCase, Limits};
use combined_margin::modulation::Modulation;
use combined_margin::rng::SplitMix64;
use combined_margin::{Dtype, Params, Profile};
use std::path::Path;
use std::process::{Command, Output};

fn cmargin(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cmargin"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Generates `x.json` and `x.npz` in `dir` with `flags` (and `--dtype f64 --profile P`).
fn generate_both(dir: &Path, profile: &str, flags: &[&str]) {
    let mut args = vec!["generate", "--profile", profile, "--dtype", "f64"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["-o", "x.json", "-o", "x.npz"]);
    let out = cmargin(dir, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{flags:?}: {}",
        text(&out.stderr)
    );
}

fn json_case(dir: &Path) -> LayerCase {
    let d = read_dump(&dir.join("x.json"), Limits::default()).unwrap();
    d.layer_cases().unwrap().remove(0)
}

/// The report lines of `cmargin check` after the first (which names the file).
fn report(out: &Output) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .skip(1)
        .map(String::from)
        .collect()
}

/// Each family flag: the JSON checks PASS (exit 0); the `.npz`, with the reference filled in
/// as the implementation's outputs, gives the same report; both readers give the same case.
#[test]
fn every_family_flag_round_trips_through_check() {
    let sets: [(&str, &[&str]); 7] = [
        ("arcface-thmm", &["--row-margins", "drawn:0.2,0.6"]),
        ("recommended", &["--row-margins", "m3=drawn:-0.1,0.3"]),
        ("arcface-thmm", &["--subcenters", "3"]),
        ("arcface-thmm", &["--curricular-t", "0.3"]),
        ("recommended", &["--intertopk", "3,0.1"]),
        ("recommended", &["--lambda", "2.5"]),
        (
            "arcface-thmm",
            &[
                "--row-margins",
                "m2=drawn:-0.2,0.5",
                "--subcenters",
                "2",
                "--curricular-t",
                "0.1",
                "--lambda",
                "1",
                "--scale",
                "30",
            ],
        ),
    ];
    for (profile, flags) in sets {
        let dir = crate::common::ScratchDir::new("genfam");
        generate_both(&dir, profile, flags);
        let json = cmargin(&dir, &["check", "x.json"]);
        let jt = text(&json.stdout);
        assert_eq!(json.status.code(), Some(0), "{flags:?}: {jt}");
        assert!(
            jt.contains("PASS") && jt.contains(profile),
            "{flags:?}: {jt}"
        );

        let mut f = read_layer_npz(&dir.join("x.npz"), Limits::default()).unwrap();
        f.case.forward = f.reference_forward.clone();
        f.case.backward = f.reference_backward.clone();
        write_layer_npz(&dir.join("filled.npz"), &f, false).unwrap();
        let npz = cmargin(&dir, &["check", "filled.npz"]);
        assert_eq!(
            npz.status.code(),
            Some(0),
            "{flags:?}: {}",
            text(&npz.stdout)
        );
        assert_eq!(report(&json), report(&npz), "{flags:?}");

        // The two readers agree on every family field.
        let j = json_case(&dir);
        let n = &f.case;
        assert_eq!(j.row_params, n.row_params, "{flags:?}");
        assert_eq!(j.subcenters, n.subcenters, "{flags:?}");
        assert_eq!(j.modulation, n.modulation, "{flags:?}");
        assert_eq!(j.lambda, n.lambda, "{flags:?}");
        assert_eq!(j.cos, n.cos, "{flags:?}");
        assert_eq!(j.forward, f.reference_forward, "{flags:?}");
    }
}

/// `--row-margins drawn:LO,HI` draws each row's m2 from the stream after top_diff (SPEC.md
/// §7.3 step 5): replayed here from splitmix64, and read back bit for bit from both files.
#[test]
fn drawn_row_margins_are_the_stream_values() {
    let (n, c, seed) = (16usize, 10usize, 1u64);
    let (lo, hi) = (0.2, 0.6);
    let mut rng = SplitMix64::new(seed);
    for _ in 0..n * c {
        rng.uniform_in(-1.0, 1.0);
    }
    for _ in 0..n {
        rng.below(c as u64);
    }
    for _ in 0..n * c {
        rng.uniform_in(-1.0, 1.0);
    }
    let drawn: Vec<f64> = (0..n).map(|_| rng.uniform_in(lo, hi)).collect();

    let dir = crate::common::ScratchDir::new("genfam-rows");
    generate_both(&dir, "recommended", &["--row-margins", "drawn:0.2,0.6"]);
    let j = json_case(&dir);
    let z = read_layer_npz(&dir.join("x.npz"), Limits::default())
        .unwrap()
        .case;
    for case in [&j, &z] {
        let rows = case.row_params.as_ref().expect("per-row margins");
        let got: Vec<u64> = rows.iter().map(|p| p.m2.to_bits()).collect();
        let want: Vec<u64> = drawn.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want);
        assert!(rows.iter().all(|p| p.m1 == 1.0 && p.m3 == 0.0));
    }

    // The library gives the same values, and a file of values is written as given.
    let spec = Spec {
        profile: Profile::preset("recommended").unwrap(),
        params: Params::new(1.0, 0.5, 0.0),
        scaled: false,
        n,
        c,
        dtype: Dtype::F64,
        input_grid: None,
        seed,
        inputs: Inputs::Uniform,
        top_diff: TopDiff::Uniform,
        ignore_every: 8,
    };
    let fam = |values| Family {
        row_margin: Some(RowMargin {
            param: MarginParam::M2,
            values,
        }),
        ..Family::default()
    };
    let g = generate_family(&spec, &fam(RowValues::Drawn { lo, hi })).unwrap();
    let lib: Vec<f64> = g.case.row_params.unwrap().iter().map(|p| p.m2).collect();
    assert_eq!(lib, drawn);
    let given: Vec<f64> = (0..n).map(|i| -0.1 + 0.05 * i as f64).collect();
    std::fs::write(
        dir.join("m.txt"),
        given
            .iter()
            .map(|x| format!("{x:e}"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let out = cmargin(
        &dir,
        &[
            "generate",
            "--dtype",
            "f64",
            "--row-margins",
            "m3=file:m.txt",
            "-o",
            "given.json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let d = read_dump(&dir.join("given.json"), Limits::default()).unwrap();
    let case = d.layer_cases().unwrap().remove(0);
    let m3: Vec<f64> = case.row_params.unwrap().iter().map(|p| p.m3).collect();
    assert_eq!(m3, given);
    let check = cmargin(&dir, &["check", "given.json"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stdout));
}

/// Bad family values: exit 2, one line on stderr naming the flag and the value, no file.
#[test]
fn bad_family_flags_exit_2_in_one_line() {
    let dir = crate::common::ScratchDir::new("genfam-bad");
    std::fs::write(dir.join("three.txt"), "0.1 0.2 0.3").unwrap();
    let cases: [(&[&str], &[&str]); 12] = [
        (&["--subcenters", "0"], &["--subcenters", "\"0\""]),
        (&["--subcenters", "two"], &["--subcenters", "\"two\""]),
        (&["--curricular-t", "hot"], &["--curricular-t", "\"hot\""]),
        (&["--intertopk", "3"], &["--intertopk", "\"3\""]),
        (&["--intertopk", "-1,0.1"], &["--intertopk", "\"-1,0.1\""]),
        (&["--lambda", "-1"], &["--lambda", "-1", ">= 0"]),
        (
            &["--row-margins", "drawn:0.5"],
            &["--row-margins", "\"drawn:0.5\""],
        ),
        (
            &["--row-margins", "m4=drawn:0,1"],
            &["--row-margins", "\"m4\""],
        ),
        (
            &["--row-margins", "m1=drawn:-1,0.5"],
            &["--row-margins m1", "m1"],
        ),
        (
            &["--row-margins", "drawn:0.6,0.2"],
            &["--row-margins m2", "0.6,0.2"],
        ),
        (
            &["--row-margins", "file:three.txt"],
            &["--row-margins", "3 values", "N = 16"],
        ),
        (
            &["--intertopk", "2,0.1", "--curricular-t", "0.2"],
            &["--intertopk", "--curricular-t"],
        ),
    ];
    for (flags, needles) in cases {
        let mut args = vec!["generate"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["-o", "bad.json"]);
        let out = cmargin(&dir, &args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{flags:?}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{flags:?}: {needle:?} not in {err}");
        }
        assert!(!dir.join("bad.json").exists(), "{flags:?}");
    }
}

/// The rows that have a target: (row, target column).
fn targets(case: &LayerCase) -> Vec<(usize, usize)> {
    case.labels
        .iter()
        .enumerate()
        .filter(|(_, &l)| l >= 0)
        .map(|(i, &l)| (i, l as usize))
        .collect()
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
        "{what}: got {got:e}, want {want:e}"
    );
}

/// One generated number per family against its closed form, computed here from the
/// formulas of SPEC.md §11 (f64 fixtures under `analytic`, ArcFace (1, 0.5, 0)).
#[test]
fn family_outputs_follow_their_closed_forms() {
    let arc = |c: f64, m2: f64| (c.acos() + m2).cos();

    // Per-row m2: the target of row i is cos(acos c + m2_i).
    let dir = crate::common::ScratchDir::new("genfam-closed");
    generate_both(&dir, "analytic", &["--row-margins", "drawn:0.1,0.7"]);
    let case = json_case(&dir);
    let rows = case.row_params.clone().unwrap();
    let fwd = case.forward.clone().unwrap();
    for (i, t) in targets(&case) {
        let at = i * case.c + t;
        close(fwd[at], arc(case.cos[at], rows[i].m2), "per-row target");
    }

    // CurricularFace: a hard negative (c above the target's cos(acos c_y + m)) is c·(t + c),
    // its gradient top_diff·(t + 2c); an easy one passes through.
    let t = 0.3;
    let dir = crate::common::ScratchDir::new("genfam-closed");
    generate_both(&dir, "analytic", &["--curricular-t", "0.3"]);
    let case = json_case(&dir);
    assert!(matches!(case.modulation, Modulation::Curricular(cu) if cu.t == t));
    let (fwd, bwd, top) = (
        case.forward.clone().unwrap(),
        case.backward.clone().unwrap(),
        case.top_diff.clone().unwrap(),
    );
    let mut hard = 0;
    for (i, y) in targets(&case) {
        let tau = arc(case.cos[i * case.c + y], 0.5);
        for j in (0..case.c).filter(|&j| j != y) {
            let (at, x) = (i * case.c + j, case.cos[i * case.c + j]);
            if x > tau + 1e-9 {
                hard += 1;
                close(fwd[at], x * (t + x), "hard negative forward");
                close(bwd[at], top[at] * (t + 2.0 * x), "hard negative backward");
            } else if x < tau - 1e-9 {
                assert_eq!(fwd[at], x, "easy negative");
            }
        }
    }
    assert!(hard > 0, "no hard negative drawn");

    // Inter-top-k (k = 2, m' = 0.1): the two largest non-targets of a row are
    // cos(acos c − m'), the others pass through.
    let dir = crate::common::ScratchDir::new("genfam-closed");
    generate_both(&dir, "analytic", &["--intertopk", "2,0.1"]);
    let case = json_case(&dir);
    let fwd = case.forward.clone().unwrap();
    for (i, y) in targets(&case) {
        let mut cols: Vec<usize> = (0..case.c).filter(|&j| j != y).collect();
        cols.sort_by(|&a, &b| case.cos[i * case.c + b].total_cmp(&case.cos[i * case.c + a]));
        for (rank, &j) in cols.iter().enumerate() {
            let (at, x) = (i * case.c + j, case.cos[i * case.c + j]);
            if rank < 2 {
                close(fwd[at], (x.acos() - 0.1).cos(), "top-k non-target");
            } else if rank > 2 {
                assert_eq!(fwd[at], x, "non-target outside the top k");
            }
        }
    }

    // A-Softmax λ = 2.5: the target is (λ·c + ψ(θ))/(1 + λ), ψ the ArcFace target.
    let dir = crate::common::ScratchDir::new("genfam-closed");
    generate_both(&dir, "analytic", &["--lambda", "2.5"]);
    let case = json_case(&dir);
    let fwd = case.forward.clone().unwrap();
    for (i, y) in targets(&case) {
        let at = i * case.c + y;
        let x = case.cos[at];
        close(fwd[at], (2.5 * x + arc(x, 0.5)) / 3.5, "lambda target");
    }

    // Sub-centres K = 3: cos is the max over K; the backward goes to the first arg-max (the
    // tie in column 0 of every row included) and is 0 at every other sub-centre.
    let dir = crate::common::ScratchDir::new("genfam-closed");
    generate_both(&dir, "analytic", &["--subcenters", "3"]);
    let f = read_layer_npz(&dir.join("x.npz"), Limits::default()).unwrap();
    let (k, sub) = f.case.subcenters.clone().unwrap();
    let back = f.reference_backward_subcenters.clone().unwrap();
    let bwd = f.reference_backward.clone().unwrap();
    let mut ties = 0;
    for cell in 0..f.case.n * f.case.c {
        let s = &sub[cell * k..(cell + 1) * k];
        let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(f.case.cos[cell], max, "cos is the max over K");
        let first = s.iter().position(|&v| v == max).unwrap();
        if s.iter().filter(|&&v| v == max).count() > 1 {
            ties += 1;
        }
        for slot in 0..k {
            let want = if slot == first { bwd[cell] } else { 0.0 };
            assert_eq!(
                back[cell * k + slot].to_bits(),
                want.to_bits(),
                "cell {cell}"
            );
        }
    }
    assert!(
        ties >= f.case.n,
        "column 0 of every row holds a tie ({ties})"
    );
    assert_eq!(json_case(&dir).subcenters, Some((k, sub)));
}

/// The `.npz` reader's family rules: sub-centres whose max is not `cos`, and a per-row array
/// of the wrong length or with an invalid row, are refused naming the array.
#[test]
fn npz_family_arrays_are_validated() {
    use combined_margin::fixture::npz::layer_npz_bytes;
    use combined_margin::fixture::read_layer_npz_bytes;
    let spec = Spec {
        profile: Profile::preset("recommended").unwrap(),
        params: Params::new(1.0, 0.5, 0.0),
        scaled: false,
        n: 6,
        c: 4,
        dtype: Dtype::F32,
        input_grid: None,
        seed: 3,
        inputs: Inputs::Uniform,
        top_diff: TopDiff::Uniform,
        ignore_every: 0,
    };
    let fam = Family {
        row_margin: Some(RowMargin {
            param: MarginParam::M2,
            values: RowValues::Drawn { lo: 0.1, hi: 0.4 },
        }),
        subcenters: Some(2),
        ..Family::default()
    };
    let g = generate_family(&spec, &fam).unwrap();
    let good = g.to_npz_layer();
    let read = |f: &combined_margin::fixture::NpzLayer| {
        read_layer_npz_bytes("t.npz", &layer_npz_bytes(f).unwrap(), Limits::default())
    };
    assert_eq!(read(&good).unwrap().case, good.case);

    let mut above = good.clone();
    let (_, sub) = above.case.subcenters.as_mut().unwrap();
    sub[5] = 1.5;
    let e = read(&above).unwrap_err().to_string();
    assert!(
        e.contains("cos_subcenters") && e.contains("max over K"),
        "{e}"
    );

    let mut short = good.clone();
    short.case.row_params.as_mut().unwrap().pop();
    let e = read(&short).unwrap_err().to_string();
    assert!(e.contains("\"m2\"") && e.contains("(6,)"), "{e}");

    let mut invalid = good.clone();
    invalid.case.row_params.as_mut().unwrap()[2].m2 = -4.0;
    let e = read(&invalid).unwrap_err().to_string();
    assert!(e.contains("\"m2\"") && e.contains("row 2"), "{e}");
}
