//! The `.npz` layer reader: files from independent writers (numpy, ndarray-npy), a
//! round trip of the crate's own writer, and every refusal with its location.

use combined_margin::fixture::generate::{generate, Inputs, Spec, TopDiff};
use combined_margin::fixture::{
    read_layer_npz, read_layer_npz_bytes, write_layer_npz, FixtureError, Limits,
};
use combined_margin::{Dtype, Params, Profile};
use ndarray::{arr1, Array1, Array2, ShapeBuilder};
use ndarray_npy::NpzWriter;
use std::io::{Cursor, Write};
use std::path::Path;

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A minimal fixture written by ndarray-npy (not this crate's writer): cos [4, 3] f32,
/// labels, params, top_diff; `edit` may change any array before it is written.
fn minimal(edit: impl FnOnce(&mut Array2<f32>, &mut Array1<i64>, &mut Array2<f32>)) -> Vec<u8> {
    let mut cos = Array2::from_shape_fn((4, 3), |(i, j)| (i as f32 - j as f32) / 8.0);
    let mut labels = arr1(&[0i64, 2, -1, 1]);
    let mut top = Array2::from_elem((4, 3), 0.5f32);
    edit(&mut cos, &mut labels, &mut top);
    let mut w = NpzWriter::new(Cursor::new(Vec::new()));
    w.add_array("cos", &cos).unwrap();
    w.add_array("labels", &labels).unwrap();
    w.add_array("params", &arr1(&[1.0f64, 0.5, 0.0])).unwrap();
    w.add_array("top_diff", &top).unwrap();
    w.finish().unwrap().into_inner()
}

fn read(bytes: &[u8]) -> Result<combined_margin::fixture::NpzLayer, FixtureError> {
    read_layer_npz_bytes("t.npz", bytes, Limits::default())
}

fn expect_err(bytes: &[u8], field: &str, words: &[&str]) -> FixtureError {
    let e = read(bytes).expect_err("must be refused");
    assert_eq!(e.file, "t.npz");
    assert_eq!(e.field.as_deref(), Some(field), "{e}");
    for w in words {
        assert!(e.problem.contains(w), "{e:?} lacks {w:?}");
    }
    e
}

/// An NPY 1.0 array with a hand-written header and `data` bytes.
pub fn npy(header: &str, data: &[u8]) -> Vec<u8> {
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

pub fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, b) in entries {
        z.start_file(*name, o).unwrap();
        z.write_all(b).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn reads_a_file_numpy_filled_in() {
    let f = read_layer_npz(&data("numpy_savez_filled.npz"), Limits::default()).unwrap();
    assert_eq!(f.dtype, Dtype::F32);
    assert_eq!(f.profile.as_deref(), Some("arcface-thmm"));
    assert_eq!((f.case.n, f.case.c), (4, 3));
    assert_eq!(f.case.labels, vec![0, 1, 0, -1]);
    // The values numpy printed when it wrote the file (tests/data/README.md).
    let want = [
        -0.661009669303894,
        -0.9664233922958374,
        0.801521360874176,
        0.1658605933189392,
        -0.5607242584228516,
        -0.5011369585990906,
        -0.5346875190734863,
        -0.34384652972221375,
        -0.7314833998680115,
        1.0000001192092896,
        -1.0000001192092896,
        1.0010000467300415,
    ];
    assert_eq!(f.case.forward.as_deref(), Some(&want[..]));
    assert_eq!(
        f.case.backward, None,
        "impl_backward is NaN everywhere: not filled in"
    );
    assert!(f.reference_forward.is_some() && f.reference_backward.is_some());
    assert_eq!(
        f.provenance["command"].as_str().unwrap(),
        "cmargin generate --profile arcface-thmm --params 1,0.5,0 --shape 4,3 --dtype f32 \
         --seed 7 --inputs uniform --top-diff uniform --ignore-every 4"
    );
}

#[test]
fn reads_numpy_savez_compressed_as_savez() {
    // numpy wrote both files from the same arrays (tests/data/README.md): deflated entries
    // must give exactly what the stored ones give.
    let z = read_layer_npz(&data("numpy_savez_compressed.npz"), Limits::default()).unwrap();
    let s = read_layer_npz(&data("numpy_savez_filled.npz"), Limits::default()).unwrap();
    assert_eq!(z.case, s.case);
    assert_eq!(z.reference_forward, s.reference_forward);
    assert_eq!(z.provenance, s.provenance);
    assert_eq!(
        z.case.forward.as_ref().map(|v| v[9]),
        Some(1.0000001192092896)
    );
}

/// A zip whose entries are deflated (as numpy.savez_compressed writes them).
fn deflated_zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, b) in entries {
        z.start_file(*name, o).unwrap();
        z.write_all(b).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn deflated_arrays_obey_the_limits_on_their_inflated_size() {
    // cos of 512 x 512 float64 zeros: 2 MiB inflated, a few KiB deflated.
    let (n, c) = (512usize, 512usize);
    let cos = npy(
        &format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({n}, {c}), }}"),
        &vec![0u8; 8 * n * c],
    );
    let labels = npy(
        &format!("{{'descr': '<i8', 'fortran_order': False, 'shape': ({n},), }}"),
        &vec![0u8; 8 * n],
    );
    let params = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
        &[1.0f64, 0.5, 0.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    let bytes = deflated_zip_of(&[
        ("cos.npy", cos),
        ("labels.npy", labels),
        ("params.npy", params),
    ]);
    assert!(bytes.len() < 64 * 1024, "deflated: {} bytes", bytes.len());
    // Within the default limits it reads, values intact.
    let f = read(&bytes).unwrap();
    assert_eq!((f.case.n, f.case.c), (n, c));
    assert!(f.case.cos.iter().all(|&x| x == 0.0));
    // A byte limit the file passes (it is small) but the inflated data does not: refused,
    // located in the array that crosses it.
    let limits = Limits {
        max_elements: 1 << 26,
        max_file_bytes: 1 << 20,
        ..Limits::default()
    };
    let e = read_layer_npz_bytes("t.npz", &bytes, limits).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("cos"), "{e}");
    assert!(e.problem.contains("over the limit of 1048576 bytes"), "{e}");
    // The element limit applies to a deflated entry's declared shape too.
    let limits = Limits {
        max_elements: 1000,
        max_file_bytes: 1 << 31,
        ..Limits::default()
    };
    let e = read_layer_npz_bytes("t.npz", &bytes, limits).unwrap_err();
    assert!(
        e.problem.contains("exceeds the limit of 1000 elements"),
        "{e}"
    );
}

#[test]
fn other_compression_methods_are_refused_by_name() {
    let mut bytes = deflated_zip_of(&[("cos.npy", vec![0u8; 64])]);
    // Patch the method field (offset 8 of the local header, 10 of the central one) to 12,
    // bzip2, which this build does not inflate.
    bytes[8] = 12;
    let cd = bytes
        .windows(4)
        .position(|w| w == b"PK\x01\x02")
        .expect("central directory");
    bytes[cd + 10] = 12;
    let e = read(&bytes).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("cos"), "{e}");
    assert!(e.problem.contains("compressed with"), "{e}");
}

#[test]
fn reads_a_minimal_file_from_another_writer() {
    let f = read(&minimal(|_, _, _| {})).unwrap();
    assert_eq!(f.dtype, Dtype::F32, "inferred from cos");
    assert_eq!(f.case.cos[3 * 2 + 1], 0.125);
    assert_eq!(f.case.labels, vec![0, 2, -1, 1]);
    assert_eq!(f.case.params, Params::new(1.0, 0.5, 0.0));
    assert!(!f.case.scaled);
    assert_eq!(f.case.forward, None);
    assert_eq!(f.case.name, "t");
}

#[test]
fn fortran_order_arrays_are_read_in_c_order() {
    let cos = Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32 / 16.0);
    let mut ft = Array2::<f32>::zeros((4, 3).f());
    ft.assign(&cos); // same values, Fortran layout
    assert!(!ft.is_standard_layout());
    let mut w = NpzWriter::new(Cursor::new(Vec::new()));
    w.add_array("cos", &ft).unwrap();
    w.add_array("labels", &arr1(&[0i32, 1, 2, 0])).unwrap();
    w.add_array("params", &arr1(&[1.0f64, 0.0, 0.35])).unwrap();
    let bytes = w.finish().unwrap().into_inner();
    let f = read(&bytes).unwrap();
    let want: Vec<f64> = (0..12).map(|k| k as f64 / 16.0).collect();
    assert_eq!(f.case.cos, want);
    assert_eq!(f.case.labels, vec![0, 1, 2, 0], "int32 labels accepted");
}

#[test]
fn generated_fixture_round_trips_bit_for_bit() {
    for (inputs, dtype, scale) in [
        (Inputs::Edges, Dtype::F32, None),
        (Inputs::Realistic { dim: 64 }, Dtype::F64, Some(64.0)),
    ] {
        let mut params = Params::new(1.0, 0.5, 0.0);
        if let Some(s) = scale {
            params.s = s;
        }
        let g = generate(&Spec {
            profile: Profile::preset("analytic").unwrap(),
            params,
            scaled: scale.is_some(),
            n: 80,
            c: 6,
            dtype,
            input_grid: None,
            seed: 3,
            inputs,
            top_diff: TopDiff::Uniform,
            ignore_every: 8,
        })
        .unwrap();
        let f = read(&g.to_npz().unwrap()).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&f.case.cos), bits(&g.case.cos));
        assert_eq!(f.case.labels, g.case.labels);
        assert_eq!(
            bits(f.case.top_diff.as_ref().unwrap()),
            bits(g.case.top_diff.as_ref().unwrap())
        );
        assert_eq!(
            bits(f.reference_forward.as_ref().unwrap()),
            bits(g.case.forward.as_ref().unwrap())
        );
        assert_eq!(
            bits(f.reference_backward.as_ref().unwrap()),
            bits(g.case.backward.as_ref().unwrap())
        );
        assert_eq!(f.case.params, g.case.params);
        assert_eq!(f.case.scaled, g.case.scaled);
        assert_eq!(f.provenance, g.provenance);
        assert_eq!(
            (f.case.forward.as_ref(), f.case.backward.as_ref()),
            (None, None)
        );
        if dtype == Dtype::F32 {
            assert!(g
                .case
                .cos
                .iter()
                .any(|x| x.to_bits() == (-0.0f64).to_bits()));
            assert!(g
                .case
                .backward
                .as_ref()
                .unwrap()
                .iter()
                .any(|x| x.is_infinite()));
        }
    }
}

#[test]
fn filled_in_outputs_round_trip_through_the_writer() {
    let g = generate(&Spec {
        profile: Profile::preset("caffe-gpu").unwrap(),
        params: Params::new(1.0, 0.3, 0.2),
        scaled: false,
        n: 5,
        c: 4,
        dtype: Dtype::F64,
        input_grid: None,
        seed: 11,
        inputs: Inputs::Uniform,
        top_diff: TopDiff::Ones,
        ignore_every: 0,
    })
    .unwrap();
    let mut layer = g.to_npz_layer();
    let mine: Vec<f64> = (0..20).map(|k| k as f64 * 0.01).collect();
    layer.case.forward = Some(mine.clone());
    let dir = tempdir("npz-rt");
    let path = dir.join("filled.npz");
    write_layer_npz(&path, &layer, false).unwrap();
    let back = read_layer_npz(&path, Limits::default()).unwrap();
    assert_eq!(back.case.forward, Some(mine));
    assert_eq!(back.case.backward, None);
    let mut want = layer.clone();
    want.file = path.display().to_string();
    assert_eq!(back, want);
    assert!(
        write_layer_npz(&path, &layer, false).is_err(),
        "no overwrite without force"
    );
}

#[test]
fn refuses_arrays_of_the_wrong_shape() {
    let short = minimal(|_, _, t| *t = Array2::from_elem((4, 2), 0.5));
    expect_err(&short, "top_diff", &["shape (4, 2)", "expected (4, 3)"]);
    let labels = minimal(|_, l, _| *l = arr1(&[0, 1, 2]));
    expect_err(&labels, "labels", &["shape (3,)", "expected (4,)"]);
}

#[test]
fn refuses_nan_inputs() {
    let bad = minimal(|c, _, _| c[[1, 2]] = f32::NAN);
    expect_err(&bad, "cos", &["element 5", "row 1, column 2", "NaN"]);
    let bad = minimal(|_, _, t| t[[3, 0]] = f32::NAN);
    expect_err(&bad, "top_diff", &["element 9", "NaN"]);
    // Infinite inputs are numbers: they are read (the layer decides what they give).
    assert!(read(&minimal(|c, _, _| c[[0, 0]] = f32::INFINITY)).is_ok());
}

#[test]
fn refuses_labels_out_of_range() {
    for (bad, shown) in [
        (3i64, "is 3"),
        (-2, "is -2"),
        (i64::MIN, "is -9223372036854775808"),
    ] {
        let b = minimal(|_, l, _| l[2] = bad);
        expect_err(&b, "labels", &["element 2", shown, "[0, 3)"]);
    }
    // Float labels must hold integers (Caffe's float label blobs are accepted).
    let float_labels = |l: [f64; 2]| {
        let mut w = NpzWriter::new(Cursor::new(Vec::new()));
        w.add_array("cos", &Array2::<f64>::zeros((2, 3))).unwrap();
        w.add_array("labels", &arr1(&l)).unwrap();
        w.add_array("params", &arr1(&[1.0f64, 0.5, 0.0])).unwrap();
        w.finish().unwrap().into_inner()
    };
    expect_err(
        &float_labels([1.0, 2.5]),
        "labels",
        &["element 1", "2.5", "not an integer"],
    );
    let f = read(&float_labels([1.0, -1.0])).unwrap();
    assert_eq!((f.dtype, f.case.labels), (Dtype::F64, vec![1, -1]));
}

#[test]
fn refuses_a_huge_declared_shape_before_allocating() {
    // 10^18 elements of f64: 8 EB. Allocating it would abort the test process, so reaching
    // the assertion at all shows the header was checked first.
    let huge = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000, 1000000000), }",
        &[],
    );
    let bytes = zip_of(&[("cos.npy", huge.clone())]);
    let e = expect_err(
        &bytes,
        "cos",
        &["(1000000000, 1000000000)", "exceeds the limit"],
    );
    assert!(e.to_string().starts_with("t.npz: field \"cos\""), "{e}");
    // The same check guards every array, not only cos.
    let ok = minimal(|_, _, _| {});
    let mut z = zip::ZipArchive::new(Cursor::new(&ok[..])).unwrap();
    let mut entries = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut b).unwrap();
        entries.push((f.name().to_string(), b));
    }
    for e in entries.iter_mut().filter(|e| e.0 == "top_diff.npy") {
        e.1 = huge.clone();
    }
    let refs: Vec<(&str, Vec<u8>)> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    expect_err(&zip_of(&refs), "top_diff", &["exceeds the limit"]);
    // Overflowing products are refused too, not wrapped.
    let wrap = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
        &[],
    );
    expect_err(&zip_of(&[("cos.npy", wrap)]), "cos", &["3 dimensions"]);
    // Teeth: a shape within the limits but without its data is a different error, "truncated",
    // so the limit check above really ran before any read of the data.
    let small = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1000, 1000), }",
        &[0; 16],
    );
    expect_err(
        &zip_of(&[("cos.npy", small.clone())]),
        "cos",
        &["truncated", "8000000"],
    );
    // And with a lower limit the same array is refused by the limit instead.
    let e = read_layer_npz_bytes(
        "t.npz",
        &zip_of(&[("cos.npy", small)]),
        Limits {
            max_elements: 999_999,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert!(e.problem.contains("exceeds the limit of 999999"), "{e}");
}

#[test]
fn refuses_malformed_files_with_located_errors() {
    let e = read(b"not a zip at all").unwrap_err();
    assert!(e.problem.contains("not an .npz"), "{e}");
    let e = read(&zip_of(&[("labels.npy", vec![])])).unwrap_err();
    assert_eq!(
        (e.field.as_deref(), e.problem.as_str()),
        (Some("cos"), "missing")
    );
    let bad_magic = zip_of(&[("cos.npy", b"\x93NUMPX\x01\x00\x00\x00".to_vec())]);
    expect_err(&bad_magic, "cos", &["bad magic"]);
    let one_d = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
        &[0; 24],
    );
    expect_err(
        &zip_of(&[("cos.npy", one_d)]),
        "cos",
        &["1 dimensions", "expected 2"],
    );
    let ints = npy(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1), }",
        &[0; 8],
    );
    expect_err(
        &zip_of(&[("cos.npy", ints)]),
        "cos",
        &["not float16, float32 or float64"],
    );
    let garbage = npy(
        "{'descr': '<f8', 'shape': (1, 1), 'fortran_order': Maybe}",
        &[0; 8],
    );
    expect_err(&zip_of(&[("cos.npy", garbage)]), "cos", &["True or False"]);
    // A declared dtype must agree with the data, and the format must be this one.
    let text = |s: &str| {
        let d: Vec<u8> = s.chars().flat_map(|c| (c as u32).to_le_bytes()).collect();
        npy(
            &format!(
                "{{'descr': '<U{}', 'fortran_order': False, 'shape': (), }}",
                s.chars().count()
            ),
            &d,
        )
    };
    let cos32 = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }",
        &[0; 4],
    );
    let mismatch = zip_of(&[("dtype.npy", text("f64")), ("cos.npy", cos32.clone())]);
    expect_err(&mismatch, "cos", &["<f4", "does not match", "f64"]);
    let other = zip_of(&[("format.npy", text("something-else/2")), ("cos.npy", cos32)]);
    expect_err(&other, "format", &["something-else/2"]);
    // params with m1 = 0 (outside the spec's domain) is a located error, not a panic.
    let mut w = NpzWriter::new(Cursor::new(Vec::new()));
    w.add_array("cos", &Array2::<f32>::zeros((1, 2))).unwrap();
    w.add_array("labels", &arr1(&[0i64])).unwrap();
    w.add_array("params", &arr1(&[0.0f64, 0.5, 0.0])).unwrap();
    expect_err(
        &w.finish().unwrap().into_inner(),
        "params",
        &["m1", "must be > 0"],
    );
}

fn tempdir(tag: &str) -> crate::common::ScratchDir {
    crate::common::ScratchDir::new(tag)
}

#[test]
fn a_non_ascii_dtype_is_an_error_not_a_panic() {
    // Regression: the descr was sliced at byte 2, inside the two-byte 'é' (found in review).
    for descr in ["<\u{e9}", "\u{e9}f8", "<f\u{e9}", "<U\u{e9}"] {
        let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1, 1), }}");
        expect_err(
            &zip_of(&[("cos.npy", npy(&h, &[0; 8]))]),
            "cos",
            &["not supported"],
        );
    }
}

#[test]
fn parameter_errors_name_the_array_that_holds_the_value() {
    let file = |m1: f64, s: f64| {
        let mut w = NpzWriter::new(Cursor::new(Vec::new()));
        w.add_array("cos", &Array2::<f32>::zeros((1, 2))).unwrap();
        w.add_array("labels", &arr1(&[0i64])).unwrap();
        w.add_array("params", &arr1(&[m1, 0.5, 0.0])).unwrap();
        w.add_array("s", &ndarray::arr0(s)).unwrap();
        w.finish().unwrap().into_inner()
    };
    expect_err(&file(1.0, 0.0), "s", &["s = 0", "must be > 0"]);
    expect_err(&file(0.0, 64.0), "params", &["m1 = 0"]);
    let f = read(&file(1.0, 64.0)).unwrap();
    assert!(f.case.scaled);
    assert_eq!(f.case.params.s, 64.0);
}

/// The margin-family scalars (SPEC.md §11.3, §11.4) are read from an `.npz` as from JSON:
/// CurricularFace's t, inter-top-k's k, m′ and activity, A-Softmax's λ; a negative λ and k
/// without m′ are refused, naming the array.
#[test]
fn family_scalars_are_read_from_npz() {
    use combined_margin::modulation::Modulation;
    let with = |extra: &[(&str, f64)]| -> Vec<u8> {
        let cos = Array2::from_shape_fn((4, 3), |(i, j)| (i as f32 - j as f32) / 8.0);
        let mut w = NpzWriter::new(Cursor::new(Vec::new()));
        w.add_array("cos", &cos).unwrap();
        w.add_array("labels", &arr1(&[0i64, 2, 1, 1])).unwrap();
        w.add_array("params", &arr1(&[1.0f64, 0.5, 0.0])).unwrap();
        for (name, v) in extra {
            w.add_array(*name, &arr1(&[*v])).unwrap();
        }
        w.finish().unwrap().into_inner()
    };
    let plain = read(&with(&[])).unwrap();
    assert_eq!(plain.case.modulation, Modulation::None);
    assert_eq!(plain.case.lambda, None);
    let cf = read(&with(&[
        ("t_after_forward", 0.25),
        ("t_before_forward", 0.0),
    ]))
    .unwrap();
    match cf.case.modulation {
        Modulation::Curricular(c) => assert_eq!((c.t, c.t_other), (0.25, Some(0.0))),
        other => panic!("{other:?}"),
    }
    let tk = read(&with(&[
        ("intertopk_k", 3.0),
        ("intertopk_m", 0.06),
        ("intertopk_active", 0.0),
    ]))
    .unwrap();
    match tk.case.modulation {
        Modulation::InterTopK(x) => assert_eq!((x.k, x.m, x.active), (3, 0.06, false)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        read(&with(&[("lambda", 5.0)])).unwrap().case.lambda,
        Some(5.0)
    );
    expect_err(&with(&[("lambda", -1.0)]), "lambda", &[">= 0"]);
    expect_err(&with(&[("intertopk_k", 3.0)]), "intertopk_m", &["missing"]);
}
