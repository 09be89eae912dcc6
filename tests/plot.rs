//! `cmargin plot` / `plot::render_svg`: the SVG is well-formed XML, every kink is tagged and
//! listed, clipped values are named, and the curves break where the forward jumps.

use combined_margin::kinks::kinks;
use combined_margin::margin::Branch;
use combined_margin::plot::{factor_curve, forward_curve, render_svg, segments, PlotSpec};
use combined_margin::{Dtype, Params, Profile};

fn texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert!(root.attribute("width").is_some() && root.attribute("height").is_some());
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

fn default_spec() -> PlotSpec {
    PlotSpec {
        profiles: PlotSpec::default_profiles(),
        params: Params::new(1.0, 0.5, 0.0),
        dtype: Dtype::F64,
        factor_range: (-2.0, 4.0),
    }
}

#[test]
fn every_kink_is_tagged_and_listed() {
    let spec = default_spec();
    let t = texts(&render_svg(&spec).unwrap());
    let mut n = 0;
    for pr in &spec.profiles {
        for k in kinks(pr, &spec.params, spec.dtype) {
            n += 1;
            let note = format!("[{n}] {}: {}; c = {:+.6}", pr.name, k.kind.name(), k.c);
            assert!(t.iter().any(|s| s.starts_with(&note)), "no note {note:?}");
            // The tag in the factor panel: "[n] ..." or a group "[.., n, ..] ...".
            let tagged = t.iter().any(|s| {
                s.strip_prefix('[')
                    .and_then(|r| r.split(']').next())
                    .is_some_and(|nums| nums.split(',').any(|x| x == n.to_string()))
                    && !s.contains(": ")
            });
            assert!(tagged, "kink {n} has no tag");
        }
    }
    // ArcFace's th/mm threshold, the Caffe clamps and the raw turn past pi are all there.
    assert!(n >= 10, "{n}");
    for want in [
        "th/mm threshold",
        "domain clamp (low)",
        "turn (phi = k*pi)",
        "angle clamp (phi = hi)",
    ] {
        assert!(t.iter().any(|s| s.contains(want)), "{want}");
    }
    for name in ["analytic", "caffe-gpu", "arcface-thmm", "recommended"] {
        assert!(
            t.iter().filter(|s| s.as_str() == name).count() >= 2,
            "legend entry {name} in both panels"
        );
    }
}

#[test]
fn a_profile_without_kinks_has_no_tags() {
    // analytic at (1, 0, 0) is the identity: no kink at all (teeth for the test above).
    let spec = PlotSpec {
        profiles: vec![Profile::preset("analytic").unwrap()],
        params: Params::new(1.0, 0.0, 0.0),
        ..default_spec()
    };
    assert!(kinks(&spec.profiles[0], &spec.params, spec.dtype).is_empty());
    let t = texts(&render_svg(&spec).unwrap());
    assert!(!t.iter().any(|s| s.starts_with('[')), "{t:?}");
    assert!(
        !t.iter().any(|s| s.contains("drawn at")),
        "the identity's factor 1 needs no clipping"
    );
}

#[test]
fn values_outside_the_range_are_named() {
    let t = texts(&render_svg(&default_spec()).unwrap());
    let has = |a: &str, b: &str| t.iter().any(|s| s.starts_with(a) && s.contains(b));
    assert!(has("analytic: factor above 4", "max +inf"));
    assert!(has("analytic: factor below -2", "min -inf"));
    assert!(has("recommended: factor above 4", "max 16.0000"));
    assert!(
        !t.iter().any(|s| s.starts_with("caffe-gpu: factor")),
        "caffe-gpu stays in [0, 2]"
    );
}

#[test]
fn curves_are_dense_at_kinks_and_break_at_the_jump() {
    let p = Params::new(1.0, 0.5, 0.0);
    let prof = Profile::preset("arcface-thmm").unwrap();
    let s = forward_curve(&prof, &p, Dtype::F64);
    // th = cos(pi - m2) for m1 = 1: theta_th = 180 - 0.5 rad in degrees.
    let th_deg = 180.0 - 0.5f64.to_degrees();
    assert!(s.iter().any(|q| q.x < th_deg && th_deg - q.x <= 1e-8));
    assert!(s.iter().any(|q| q.x > th_deg && q.x - th_deg <= 1e-8));
    let segs = segments(&s, -10.0, 10.0);
    assert_eq!(segs.len(), 2, "one break, at the threshold");
    // Closed forms on either side: cos(pi) - 0 = -1 on the margin side; the fallback
    // c - m2 sin m2 with c = cos(pi - 0.5) on the other.
    let end = segs[0].last().unwrap();
    let start = segs[1][0];
    assert!((end.1 + 1.0).abs() < 1e-9, "{end:?}");
    let fb = (std::f64::consts::PI - 0.5).cos() - 0.5 * 0.5f64.sin();
    assert!((start.1 - fb).abs() < 1e-9, "{start:?} vs {fb}");
    assert!(
        s.iter().any(|q| q.branch == Branch::Fallback)
            && s.iter().any(|q| q.branch == Branch::Margin)
    );
    // The raw curve is one piece; its factor's NaN-free values are clamped into the range.
    let raw = forward_curve(&Profile::preset("analytic").unwrap(), &p, Dtype::F64);
    assert_eq!(segments(&raw, -10.0, 10.0).len(), 1);
    let f = factor_curve(&Profile::preset("analytic").unwrap(), &p, Dtype::F64);
    assert!(f.iter().any(|q| q.y == f64::INFINITY));
    assert!(
        f.iter().any(|q| q.x > 0.0 && 1.0 - q.x <= 1e-12),
        "sampled towards c = 1"
    );
    for seg in segments(&f, -2.0, 4.0) {
        assert!(seg.iter().all(|&(_, y)| (-2.0..=4.0).contains(&y)));
    }
}

#[test]
fn bad_requests_are_errors() {
    assert!(render_svg(&PlotSpec {
        profiles: vec![],
        ..default_spec()
    })
    .is_err());
    assert!(render_svg(&PlotSpec {
        factor_range: (4.0, -2.0),
        ..default_spec()
    })
    .is_err());
    assert!(render_svg(&PlotSpec {
        factor_range: (0.0, f64::INFINITY),
        ..default_spec()
    })
    .is_err());
    assert!(render_svg(&PlotSpec {
        params: Params::new(-1.0, 0.5, 0.0),
        ..default_spec()
    })
    .is_err());
}

#[test]
fn cli_writes_once_and_refuses_to_overwrite() {
    let d = crate::common::ScratchDir::new("plot");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cmargin"))
            .current_dir(&d)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "plot",
        "--profile",
        "caffe-cpu,detached",
        "--params",
        "1,0.3,0.2",
        "-o",
        "p.svg",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(d.join("p.svg")).unwrap();
    let t = texts(&svg);
    assert!(t.iter().any(|s| s.contains("(m1, m2, m3) = (1, 0.3, 0.2)")));
    let out = run(&["plot", "-o", "p.svg"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(d.join("p.svg")).unwrap(),
        svg,
        "unchanged"
    );
    let out = run(&["plot", "--profile", "nonesuch", "-o", "q.svg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!d.join("q.svg").exists());
}
