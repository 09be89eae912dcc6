//! `cmargin generate` and `fixture::generate`: the RNG against an independent record,
//! determinism to the byte, `--force`, atomic writes, round trips, and the reference values
//! against closed forms.

use combined_margin::catalogue::edge_cases;
use combined_margin::fixture::generate::{
    generate, ignored_row_values, is_ignored, rows_for, Generated, Inputs, Spec, TopDiff,
};
use combined_margin::fixture::{read_dump, read_dump_str, Limits};
use combined_margin::rng::SplitMix64;
use combined_margin::{Dtype, Params, Profile};
use std::path::Path;
use std::process::Command;

fn spec(
    profile: Profile,
    params: Params,
    n: usize,
    c: usize,
    dtype: Dtype,
    inputs: Inputs,
) -> Spec {
    Spec {
        profile,
        params,
        scaled: false,
        n,
        c,
        dtype,
        input_grid: None,
        seed: 42,
        inputs,
        top_diff: TopDiff::Uniform,
        ignore_every: 8,
    }
}

fn tempdir(tag: &str) -> crate::common::ScratchDir {
    crate::common::ScratchDir::new(&format!("gen-{tag}"))
}

fn cmargin(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cmargin"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn rng_reproduces_the_caffe_golden_inputs() {
    // fixtures/golden/caffe/README.md: case `arcface_random_n16_c10` was drawn from
    // splitmix64 with seed 1001: 160 × uniform(-1, 1), 16 × randint(10) (rows 3 and 11 then
    // set to -1), 160 × uniform(-1, 1) for top_diff. The dump was written by another program.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dump = read_dump(
        &root.join("fixtures/golden/caffe/layer_cpu_f64.json"),
        Limits::default(),
    )
    .unwrap();
    let case = dump
        .layer_cases()
        .unwrap()
        .into_iter()
        .find(|c| c.name == "arcface_random_n16_c10")
        .unwrap();
    let mut r = SplitMix64::new(1001);
    let cos: Vec<f64> = (0..160).map(|_| r.uniform_in(-1.0, 1.0)).collect();
    let mut labels: Vec<i64> = (0..16).map(|_| r.below(10) as i64).collect();
    labels[3] = -1;
    labels[11] = -1;
    let top: Vec<f64> = (0..160).map(|_| r.uniform_in(-1.0, 1.0)).collect();
    assert_eq!(cos, case.cos);
    assert_eq!(labels, case.labels);
    assert_eq!(Some(top), case.top_diff);
    // Teeth: a neighbouring seed does not reproduce it.
    let mut r = SplitMix64::new(1002);
    assert_ne!(r.uniform_in(-1.0, 1.0), case.cos[0]);
}

#[test]
fn same_spec_same_bytes_other_seed_other_bytes() {
    for inputs in [
        Inputs::Uniform,
        Inputs::Realistic { dim: 512 },
        Inputs::Edges,
    ] {
        let s = spec(
            Profile::preset("caffe-gpu").unwrap(),
            Params::new(1.0, 0.5, 0.0),
            40,
            7,
            Dtype::F32,
            inputs,
        );
        let (a, b) = (generate(&s).unwrap(), generate(&s).unwrap());
        assert_eq!(a.to_json(), b.to_json());
        assert_eq!(a.to_npz().unwrap(), b.to_npz().unwrap());
        let other = generate(&Spec { seed: 43, ..s }).unwrap();
        assert_ne!(a.to_json(), other.to_json());
        assert_ne!(a.to_npz().unwrap(), other.to_npz().unwrap());
    }
}

#[test]
fn cli_runs_give_byte_identical_files() {
    let (d1, d2) = (tempdir("det1"), tempdir("det2"));
    let args = [
        "generate",
        "--profile",
        "arcface-thmm",
        "--params",
        "1,0.5,0.1",
        "--scale",
        "64",
        "--inputs",
        "edges",
        "--dtype",
        "f64",
        "--seed",
        "9",
        "-o",
        "f.json",
        "-o",
        "f.npz",
    ];
    assert!(cmargin(&d1, &args).status.success());
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a later zip timestamp, if one leaked in
    let out = cmargin(&d2, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["f.json", "f.npz"] {
        let (a, b) = (
            std::fs::read(d1.join(f)).unwrap(),
            std::fs::read(d2.join(f)).unwrap(),
        );
        assert!(a.len() > 1000);
        assert_eq!(a, b, "{f} differs between two runs");
    }
    // The npz is a zip whose every entry carries the fixed 1980-01-01 00:00 timestamp.
    let bytes = std::fs::read(d1.join("f.npz")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    for i in 0..z.len() {
        let e = z.by_index(i).unwrap();
        let t = e.last_modified().unwrap();
        assert_eq!(
            (t.year(), t.month(), t.day(), t.hour(), t.minute()),
            (1980, 1, 1, 0, 0)
        );
    }
}

#[test]
fn existing_files_are_kept_without_force() {
    let d = tempdir("force");
    std::fs::write(d.join("x.json"), b"precious").unwrap();
    let out = cmargin(&d, &["generate", "-o", "y.npz", "-o", "x.json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("x.json exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(d.join("x.json")).unwrap(), b"precious");
    assert_eq!(
        files_in(&d),
        vec!["x.json"],
        "y.npz must not be written either"
    );
    let out = cmargin(&d, &["generate", "-o", "y.npz", "-o", "x.json", "--force"]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(d.join("x.json")).unwrap();
    assert!(text.starts_with("{\n  \"format\": \"golden-dump/1\""));
}

#[test]
fn failures_leave_no_file_behind() {
    let d = tempdir("atomic");
    // A bad argument is refused before any output is opened.
    for bad in [
        vec!["generate", "-o", "a.json", "--params", "0,0.5,0"],
        vec!["generate", "-o", "a.json", "-o", "b.txt"],
        vec!["generate", "-o", "a.json", "--profile", "nonesuch"],
        vec!["generate", "-o", "a.json", "--shape", "0,10"],
        vec!["generate", "-o", "a.json", "--shape", "100000,100000"],
        vec!["generate", "-o", "a.json", "--inputs", "gaussian"],
        vec![
            "generate",
            "-o",
            "a.json",
            "--inputs",
            "edges",
            "--ignore-every",
            "1",
        ],
        vec!["generate", "-o", "a.json", "--ignore-every", "1"],
    ] {
        let out = cmargin(&d, &bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!out.stderr.is_empty());
    }
    // A write that fails part-way (the directory does not exist) leaves no temporary file.
    let out = cmargin(&d, &["generate", "-o", "a.json", "-o", "missing/b.npz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing/b.npz"));
    assert_eq!(
        files_in(&d),
        vec!["a.json"],
        "only the complete first file, no *.tmp"
    );
}

/// Every entry of `g` not at a (non-ignored) target: (row, column).
fn targets(g: &Generated) -> Vec<(usize, usize)> {
    let c = &g.case;
    (0..c.n)
        .filter(|&i| c.labels[i] >= 0)
        .map(|i| (i, c.labels[i] as usize))
        .collect()
}

#[test]
fn json_and_npz_round_trip_bit_for_bit() {
    for dtype in [Dtype::F32, Dtype::F64] {
        let mut s = spec(
            Profile::preset("analytic").unwrap(),
            Params::new(1.35, 0.25, 0.1),
            0,
            9,
            dtype,
            Inputs::Edges,
        );
        s.n = rows_for(edge_cases(&s.profile, &s.params, dtype).len(), 8).unwrap();
        let g = generate(&s).unwrap();
        // NaN's sign and payload carry no meaning (the format writes every NaN as "NaN").
        let bits = |v: &[f64]| {
            v.iter()
                .map(|x| {
                    if x.is_nan() {
                        f64::NAN.to_bits()
                    } else {
                        x.to_bits()
                    }
                })
                .collect::<Vec<_>>()
        };
        let dump = read_dump_str("g.json", &g.to_json(), Limits::default()).unwrap();
        assert_eq!(dump.dtype, dtype);
        let cases = dump.layer_cases().unwrap();
        assert_eq!(cases.len(), 1);
        let j = &cases[0];
        assert_eq!(bits(&j.cos), bits(&g.case.cos));
        assert_eq!(j.labels, g.case.labels);
        assert_eq!(
            bits(j.top_diff.as_ref().unwrap()),
            bits(g.case.top_diff.as_ref().unwrap())
        );
        // Outputs too: the generator writes every NaN as the positive quiet NaN, which is
        // what JSON's "NaN" reads back as (x86 makes 0xFFF8… in some builds).
        for (a, b) in [
            (&j.forward, &g.case.forward),
            (&j.backward, &g.case.backward),
        ] {
            assert_eq!(bits(a.as_ref().unwrap()), bits(b.as_ref().unwrap()));
        }
        let nan = f64::NAN.to_bits();
        let outs = g.case.forward.iter().chain(&g.case.backward).flatten();
        assert!(outs.filter(|x| x.is_nan()).all(|x| x.to_bits() == nan));
        // (LayerCase holds NaN, so `==` on the whole case cannot hold; compare the rest.)
        assert_eq!(
            (&j.name, j.params, j.params_effective, j.scaled, j.n, j.c),
            (
                &g.case.name,
                g.case.params,
                g.case.params_effective,
                g.case.scaled,
                g.case.n,
                g.case.c
            )
        );
        let n = combined_margin::fixture::read_layer_npz_bytes(
            "g.npz",
            &g.to_npz().unwrap(),
            Limits::default(),
        )
        .unwrap();
        assert_eq!(bits(&n.case.cos), bits(&j.cos));
        // The npz keeps every bit.
        assert_eq!(
            bits(n.reference_backward.as_ref().unwrap()),
            bits(g.case.backward.as_ref().unwrap())
        );
        assert_eq!(
            bits(n.reference_forward.as_ref().unwrap()),
            bits(g.case.forward.as_ref().unwrap())
        );
        // The catalogue has signed zeros and non-finite outputs: the round trip keeps them.
        assert!(j.cos.iter().any(|x| x.to_bits() == (-0.0f64).to_bits()));
        assert!(j.forward.as_ref().unwrap().iter().any(|x| x.is_nan()));
    }
}

#[test]
fn edges_put_every_catalogue_value_at_a_target_and_ignored_rows_hold_out_of_range_values() {
    let p = Params::new(1.0, 0.5, 0.0);
    for profile in Profile::presets() {
        for dtype in [Dtype::F32, Dtype::F64] {
            let cat = edge_cases(&profile, &p, dtype);
            let n = rows_for(cat.len(), 8).unwrap();
            let g = generate(&spec(profile.clone(), p, n, 5, dtype, Inputs::Edges)).unwrap();
            assert_eq!(
                (g.catalogue_len, g.catalogue_placed),
                (cat.len(), cat.len())
            );
            let at: Vec<u64> = targets(&g)
                .iter()
                .map(|&(i, j)| g.case.cos[i * 5 + j].to_bits())
                .collect();
            assert_eq!(
                at,
                cat.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{profile} {dtype}"
            );
            let oor = ignored_row_values(dtype);
            let ignored: Vec<usize> = (0..n).filter(|&i| g.case.labels[i] == -1).collect();
            assert_eq!(
                ignored,
                (0..n).filter(|&i| is_ignored(i, 8)).collect::<Vec<_>>()
            );
            assert!(ignored.len() >= 2);
            for &i in &ignored {
                for j in 0..5 {
                    let x = g.case.cos[i * 5 + j];
                    assert_eq!(x, oor[j % oor.len()]);
                    // Ignored rows pass through, whatever the profile does to such values
                    // (unless the profile gives every entry its non-target treatment).
                    if profile.transforms_non_targets() {
                        continue;
                    }
                    assert_eq!(
                        g.case.forward.as_ref().unwrap()[i * 5 + j].to_bits(),
                        x.to_bits()
                    );
                }
            }
            assert!(oor.iter().filter(|x| x.abs() > 1.0).count() >= 4);
        }
    }
}

#[test]
fn reference_matches_closed_forms() {
    // CosFace (1, 0, m3) under `analytic` is c − m3 exactly (the (1, 0) shortcut), factor 1;
    // identity (1, 0, 0) returns the input. Every non-target entry is the input.
    for dtype in [Dtype::F32, Dtype::F64] {
        for (m3, scale) in [(0.35, None), (0.0, None), (0.35, Some(30.0))] {
            let mut s = spec(
                Profile::preset("analytic").unwrap(),
                Params::new(1.0, 0.0, m3),
                24,
                6,
                dtype,
                Inputs::Uniform,
            );
            if let Some(v) = scale {
                s.params.s = v;
                s.scaled = true;
            }
            let g = generate(&s).unwrap();
            let (fwd, bwd) = (
                g.case.forward.as_ref().unwrap(),
                g.case.backward.as_ref().unwrap(),
            );
            let top = g.case.top_diff.as_ref().unwrap();
            let sc = scale.unwrap_or(1.0);
            let t = targets(&g);
            for k in 0..g.case.cos.len() {
                let (i, j) = (k / 6, k % 6);
                let c = g.case.cos[k];
                let (want_f, want_b) = if t.contains(&(i, j)) {
                    ((c - m3) * sc, top[k] * sc)
                } else {
                    (c * sc, top[k] * sc)
                };
                assert_eq!(
                    fwd[k],
                    dtype.round(want_f),
                    "{dtype} m3={m3} s={sc} entry {k}"
                );
                assert_eq!(bwd[k], dtype.round(want_b));
            }
            assert!(t.len() >= 18);
        }
    }
    // ArcFace (1, 0.5, 0), f64, analytic: cos(θ + m) = c·cos m − sqrt(1 − c²)·sin m (the
    // angle-addition form, no acos), and the factor sin(θ + m)/sin θ = cos m + c·sin m/sqrt(1 − c²).
    let g = generate(&spec(
        Profile::preset("analytic").unwrap(),
        Params::new(1.0, 0.5, 0.0),
        64,
        8,
        Dtype::F64,
        Inputs::Uniform,
    ))
    .unwrap();
    let (fwd, bwd, top) = (
        g.case.forward.as_ref().unwrap(),
        g.case.backward.as_ref().unwrap(),
        g.case.top_diff.as_ref().unwrap(),
    );
    let (cm, sm) = (0.5f64.cos(), 0.5f64.sin());
    for (i, j) in targets(&g) {
        let k = i * 8 + j;
        let c = g.case.cos[k];
        let r = ((1.0 - c) * (1.0 + c)).sqrt();
        let f = c * cm - r * sm;
        assert!(
            (fwd[k] - f).abs() <= 4e-16 + 1e-15 * f.abs() / r.max(1e-3),
            "{c}: {} vs {f}",
            fwd[k]
        );
        let b = top[k] * (cm + c * sm / r);
        assert!(
            (bwd[k] - b).abs() <= 1e-14 * (1.0 + b.abs()) / r,
            "{c}: {} vs {b}",
            bwd[k]
        );
    }
    // Teeth: the closed form of a different margin does not match.
    let (i, j) = targets(&g)[0];
    let c = g.case.cos[i * 8 + j];
    assert!(
        (fwd[i * 8 + j] - (c * 0.4f64.cos() - ((1.0 - c * c).sqrt()) * 0.4f64.sin())).abs() > 1e-3
    );
}

#[test]
fn distributions_have_the_documented_moments() {
    let draw = |inputs| {
        let s = spec(
            Profile::preset("recommended").unwrap(),
            Params::new(1.0, 0.5, 0.0),
            200,
            100,
            Dtype::F64,
            inputs,
        );
        generate(&Spec {
            ignore_every: 0,
            ..s
        })
        .unwrap()
    };
    let g = draw(Inputs::Realistic { dim: 512 });
    let m = g.case.cos.len() as f64;
    let mean = g.case.cos.iter().sum::<f64>() / m;
    let sd = (g.case.cos.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / m).sqrt();
    // 20 000 draws: the sample sd is within 2% of 1/sqrt(512) = 0.0442 with overwhelming
    // probability (its relative standard error is 1/sqrt(2·20000) = 0.5%).
    assert!((sd * 512f64.sqrt() - 1.0).abs() < 0.02, "sd {sd}");
    assert!(mean.abs() < 4.0 * 0.0442 / m.sqrt(), "mean {mean}");
    let g = draw(Inputs::Uniform);
    let var = g.case.cos.iter().map(|x| x * x).sum::<f64>() / m;
    assert!(g.case.cos.iter().all(|x| (-1.0..1.0).contains(x)));
    assert!(
        (var * 3.0 - 1.0).abs() < 0.03,
        "uniform(-1,1) has variance 1/3, got {var}"
    );
    // Labels cover the classes.
    let mut seen = [false; 100];
    g.case.labels.iter().for_each(|&l| seen[l as usize] = true);
    assert!(seen.iter().filter(|&&s| s).count() > 80);
}

#[test]
fn provenance_names_everything_needed_to_regenerate() {
    let mut s = spec(
        Profile::preset("arcface-thmm-easy").unwrap(),
        Params::new(1.0, 0.5, 0.0),
        16,
        10,
        Dtype::F32,
        Inputs::Realistic { dim: 128 },
    );
    s.params.s = 64.0;
    s.scaled = true;
    s.top_diff = TopDiff::Ones;
    let g = generate(&s).unwrap();
    let p = &g.provenance;
    assert_eq!(
        p["generator"],
        format!("combined-margin {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(p["profile"]["name"], "arcface-thmm-easy");
    assert_eq!(p["profile"]["angle"]["kind"], "easy-margin");
    assert_eq!(
        (p["seed"].as_u64(), p["scaled"].as_bool()),
        (Some(42), Some(true))
    );
    assert_eq!(p["inputs"]["dim"], 128);
    let cmd = p["command"].as_str().unwrap();
    assert_eq!(
        cmd,
        "cmargin generate --profile arcface-thmm-easy --params 1,0.5,0 --scale 64 --shape 16,10 \
         --dtype f32 --seed 42 --inputs realistic --dim 128 --top-diff ones --ignore-every 8"
    );
    // The recorded command regenerates the same bytes through the CLI.
    let d = tempdir("prov");
    let mut args: Vec<&str> = cmd.split(' ').skip(1).collect();
    args.extend(["-o", "r.json"]);
    assert!(cmargin(&d, &args).status.success());
    assert_eq!(
        std::fs::read_to_string(d.join("r.json")).unwrap(),
        g.to_json()
    );
    // FORMAT.md: `params.s` present means forward/backward are scaled.
    let j: serde_json::Value = serde_json::from_str(&g.to_json()).unwrap();
    assert_eq!(j["cases"][0]["params"]["s"], 64.0);
    let unscaled = generate(&Spec { scaled: false, ..s }).unwrap();
    let j: serde_json::Value = serde_json::from_str(&unscaled.to_json()).unwrap();
    assert!(j["cases"][0]["params"].get("s").is_none());
}

#[test]
fn rows_for_gives_each_catalogue_value_exactly_one_row() {
    // Brute force: the smallest N whose non-ignored rows number at least len.
    for k in [0usize, 2, 3, 8] {
        for len in 0..40 {
            let mut n = 0;
            while (0..n).filter(|&i| !is_ignored(i, k)).count() < len {
                n += 1;
            }
            assert_eq!(rows_for(len, k).unwrap(), n, "len {len} k {k}");
        }
    }
    assert!(rows_for(5, 1).is_err());
}
