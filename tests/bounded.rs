//! The bounded comparison (SPEC.md §8.5) against the complete one: on every shipped golden
//! case, under its mapped profile and under a profile it does not follow (so that cases fail
//! and the subset diagnosis runs), the bounded check gives the same tallies, the same worst
//! element, the same verdict and the same named causes. The complete comparison is the
//! independent side here: it keeps every element and its detectors read them all.

use crate::golden::golden_dir;
use combined_margin::compare::{Detail, Side};
use combined_margin::conformance;
use combined_margin::deviation::{self, CaseCheck, Declared};
use combined_margin::profile::{mapped_profile, Profile};
use combined_margin::scope::{self, Scope};

/// What a user sees of a check: verdict, tallies, worst element, causes, unexplained count.
fn digest(ck: &CaseCheck) -> String {
    let r = &ck.report;
    let w = r.worst().map(|e| {
        (
            e.side,
            e.row,
            e.col,
            e.fraction.to_bits(),
            e.actual.to_bits(),
            e.reference.to_bits(),
        )
    });
    let tallies: Vec<(usize, usize, Option<u64>)> = r
        .tallies()
        .iter()
        .map(|(_, t)| (t.count, t.within, t.worst.map(|e| e.fraction.to_bits())))
        .collect();
    let mut findings: Vec<String> = ck.findings().map(|d| d.kind.to_string()).collect();
    findings.sort();
    let mut notes: Vec<String> = ck.notes().map(|d| d.kind.to_string()).collect();
    notes.sort();
    format!(
        "{:?} passed {} count {} within {} non-finite within {} worst {w:?} tallies {tallies:?} findings {findings:?} notes {notes:?} unexplained {} sides {} {}",
        ck.verdict(),
        r.passed(),
        r.count(),
        r.within(),
        r.non_finite_within,
        ck.unexplained.len() + ck.undiagnosed(),
        r.has_side(Side::Forward),
        r.has_side(Side::Backward),
    )
}

#[test]
fn a_bounded_check_of_every_golden_case_reads_as_the_complete_one() {
    let set = conformance::golden_set(Some(&golden_dir())).expect("golden set");
    let other = Profile::preset("analytic").unwrap();
    let (mut cases, mut failing, mut subsets) = (0, 0, 0);
    for (rel, dump) in &set.dumps {
        for raw in &dump.cases {
            let sc = scope::classify(dump.kind, &dump.implementation, raw).unwrap();
            if sc != Scope::CombinedMargin {
                continue;
            }
            let case = dump.layer_view(raw).unwrap();
            let mapped = mapped_profile(&dump.implementation, case.easy_margin);
            for prof in mapped.iter().chain([&other]) {
                let check = |detail| {
                    deviation::check_with(&case, prof, dump.dtype, &Declared::default(), detail)
                };
                let (every, bounded) = match (check(Detail::Every), check(Detail::Bounded)) {
                    (Ok(e), Ok(b)) => (e, b),
                    // Refused input (a label out of range) is refused alike.
                    (Err(e), Err(b)) => {
                        assert_eq!(e.to_string(), b.to_string(), "{rel} {}", raw.name);
                        continue;
                    }
                    (e, b) => panic!("{rel} {}: {:?} vs {:?}", raw.name, e.err(), b.err()),
                };
                assert!(every.subset.is_none() && bounded.subset.is_some());
                assert!(bounded.report.elements.len() <= every.report.elements.len());
                assert_eq!(
                    digest(&every),
                    digest(&bounded),
                    "{rel} case {:?} under {}",
                    raw.name,
                    prof.name
                );
                cases += 1;
                failing += usize::from(!every.report.passed());
                subsets += bounded.subset.as_ref().map_or(0, |s| s.rows.len());
            }
        }
    }
    println!("{cases} (case, profile) pairs, {failing} failing; {subsets} rows diagnosed");
    assert!(
        cases > 100 && failing > 20,
        "{cases} pairs, {failing} failing"
    );
}

/// CosFace at s = 1 in f64 with `n` rows of `c` classes: the closed form is the target
/// `c − m3` (one rounding) and a copy elsewhere, forward and backward (top_diff copied).
/// `scale` multiplies every non-target forward of the rows in `scaled`.
fn cosface(
    n: usize,
    c: usize,
    scale: f64,
    scaled: &[usize],
) -> combined_margin::fixture::LayerCase {
    let m3 = 0.35;
    // A fixed LCG: inputs in [-0.5, 0.5), targets in [0.25, 0.75).
    let mut x = 0x2545F4914F6CDD1Du64;
    let mut draw = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let labels: Vec<i64> = (0..n).map(|i| ((i * 7919) % c) as i64).collect();
    let mut cos = vec![0.0; n * c];
    let mut fwd = vec![0.0; n * c];
    for (i, &label) in labels.iter().enumerate() {
        for j in 0..c {
            let k = i * c + j;
            if label as usize == j {
                cos[k] = 0.5 + draw() / 2.0;
                fwd[k] = cos[k] - m3;
            } else {
                cos[k] = draw();
                fwd[k] = if scaled.contains(&i) {
                    scale * cos[k]
                } else {
                    cos[k]
                };
            }
        }
    }
    let top: Vec<f64> = (0..n * c)
        .map(|k| if k % 3 == 0 { -1.0 } else { 0.5 })
        .collect();
    combined_margin::fixture::LayerCase {
        name: "cosface-bounded".into(),
        params: combined_margin::params::Params::new(1.0, 0.0, m3),
        params_effective: combined_margin::params::Params::new(1.0, 0.0, m3),
        scaled: false,
        easy_margin: None,
        n,
        c,
        cos,
        labels,
        top_diff: Some(top.clone()),
        forward: Some(fwd),
        backward: Some(top),
        row_params: None,
        modulation: Default::default(),
        lambda: None,
        subcenters: None,
    }
}

/// A case over [`combined_margin::compare::EVERY_ELEMENT_MAX`] entries per side is compared
/// bounded: a correct layer passes with no per-element list beyond its targets; a layer that
/// scales the non-targets of three rows by 1.01 fails with the complete check's cause named
/// from a subset of rows, the failures beyond the listing counted, and the failing row
/// outside the subset counted as not diagnosed.
#[test]
fn a_large_case_is_checked_bounded_and_diagnosed_on_a_subset_of_rows() {
    use combined_margin::compare::{DIAGNOSED_MAX, EVERY_ELEMENT_MAX, LISTED_MAX};
    let (n, c) = (18, 60_000);
    let most = DIAGNOSED_MAX / c;
    assert!(n * c > EVERY_ELEMENT_MAX && most == 2);
    let prof = Profile::preset("analytic").unwrap();
    let dtype = combined_margin::dtype::Dtype::F64;
    let check = |case: &combined_margin::fixture::LayerCase, detail| {
        deviation::check_with(case, &prof, dtype, &Declared::default(), detail).unwrap()
    };

    let good = cosface(n, c, 1.0, &[]);
    let ck = deviation::check(&good, &prof, dtype, &Declared::default()).unwrap();
    assert_eq!(ck.verdict(), deviation::Verdict::Pass);
    assert_eq!(ck.report.elements.len(), 2 * n, "targets only");
    assert_eq!(
        (ck.report.count(), ck.report.within()),
        (2 * n * c, 2 * n * c)
    );
    let sub = ck.subset.as_ref().expect("a bounded check");
    assert_eq!((sub.rows.clone(), sub.undiagnosed), (vec![0, 1], 0));

    let bad = cosface(n, c, 1.01, &[0, 5, 17]);
    let (every, bounded) = (check(&bad, Detail::Every), check(&bad, Detail::Bounded));
    let failing = every.report.count() - every.report.within();
    assert!(failing > LISTED_MAX, "{failing} failing elements");
    assert_eq!(bounded.report.unlisted, failing - LISTED_MAX);
    let kinds = |ck: &CaseCheck| {
        let mut k: Vec<String> = ck.findings().map(|d| d.kind.to_string()).collect();
        k.sort();
        k
    };
    assert!(
        !kinds(&every).is_empty(),
        "the complete check names a cause"
    );
    assert_eq!(kinds(&every), kinds(&bounded));
    assert_eq!(every.verdict(), bounded.verdict());
    let sub = bounded.subset.as_ref().unwrap();
    // Rows 0 and 5 are diagnosed; row 17 fails too and is not. The causes' words number
    // rows within the subset, and say so.
    assert_eq!(sub.rows, vec![0, 5]);
    for d in &bounded.deviations {
        assert!(
            d.detail
                .ends_with("numbered within the diagnosed subset: 1 is row 5]"),
            "{}",
            d.detail
        );
    }
    assert_eq!(sub.undiagnosed, failing / 3, "row 17's failures");
    assert!(!bounded.accepted_with(&[]));
    let w = (
        every.report.worst().unwrap(),
        bounded.report.worst().unwrap(),
    );
    assert_eq!(
        (w.0.row, w.0.col, w.0.fraction),
        (w.1.row, w.1.col, w.1.fraction)
    );
}

/// [`cosface`] as a scaled f32 layer (s = 64): every output rounded to f32, so that the
/// pass-through elements have errors within their half-ulp budget but not zero, and the
/// pass-through tallies have a worst element to agree on.
fn cosface_f32_scaled(
    n: usize,
    c: usize,
    scale: f64,
    scaled: &[usize],
) -> combined_margin::fixture::LayerCase {
    let mut case = cosface(n, c, scale, scaled);
    let s = 64.0;
    case.params.s = s;
    case.params_effective.s = s;
    case.scaled = true;
    let f32r = |v: f64| v as f32 as f64;
    for v in case.forward.as_mut().unwrap() {
        *v = f32r(s * *v);
    }
    for v in case.backward.as_mut().unwrap() {
        *v = f32r(s * *v);
    }
    case
}

/// The pass-through part of `case` at `targets`, built element by element with the
/// reference's pass-through values (what the search's untouched pass adds).
fn part_of(
    case: &combined_margin::fixture::LayerCase,
    targets: &[Option<usize>],
    dtype: combined_margin::dtype::Dtype,
) -> combined_margin::compare::PassThroughPart {
    use combined_margin::compare::{self, PassThroughPart, PassThroughRow, Reference};
    let p = compare::output_params(case);
    let reference = Reference::new(&Profile::preset("analytic").unwrap(), &p, dtype);
    let mut part = PassThroughPart::new(targets.to_vec(), p.s, dtype);
    for (row, t) in targets.iter().enumerate() {
        let mut r = PassThroughRow::default();
        for col in (0..case.c).filter(|&col| Some(col) != *t) {
            let k = row * case.c + col;
            let top = case.top_diff.as_ref().unwrap()[k];
            let (f, b, bud) = reference.passthrough(case.cos[k], top);
            r.add(case, row, col, (f, b), bud);
        }
        part.add_row(row, &r);
    }
    part
}

/// `--profile auto` checks the point it finds with the pass-through tallies of the search's
/// own pass over the non-targets (SPEC.md §8.5): that check reads exactly as a fresh one. The
/// part is really read (one from another layer of the same shape gives that layer's tallies),
/// and refused where it is not the same pass: a pass-through element out of budget (it must
/// be listed), a profile that transforms non-targets.
#[test]
fn the_check_after_a_search_reuses_its_pass_and_reads_as_a_fresh_check() {
    use combined_margin::dtype::Dtype;
    use combined_margin::verdict::search;
    let (n, c) = (18, 60_000);
    assert!(n * c > combined_margin::compare::EVERY_ELEMENT_MAX);
    let dtype = Dtype::F32;
    let case = cosface_f32_scaled(n, c, 1.0, &[]);
    let found = search::search(std::slice::from_ref(&case), dtype).unwrap();
    let part = found.passthrough[0]
        .as_ref()
        .expect("the search's untouched pass fills the part");
    let prof = &found.best().profile;
    let fresh = |case: &combined_margin::fixture::LayerCase, prof: &Profile| {
        deviation::check_with(case, prof, dtype, &Declared::default(), Detail::Bounded).unwrap()
    };
    let reusing = |case: &combined_margin::fixture::LayerCase,
                   prof: &Profile,
                   part: &combined_margin::compare::PassThroughPart| {
        deviation::check_reusing(
            case,
            prof,
            dtype,
            &Declared::default(),
            Detail::Bounded,
            Some(part),
        )
        .unwrap()
    };
    let (a, b) = (fresh(&case, prof), reusing(&case, prof, part));
    assert_eq!(a.verdict(), deviation::Verdict::Pass);
    assert!(
        a.report.forward_passthrough.max_fraction() > 0.0,
        "a worst to agree on"
    );
    assert_eq!(digest(&a), digest(&b));
    assert_eq!(a.report.elements, b.report.elements);
    assert_eq!(
        (a.report.forward_passthrough, a.report.backward_passthrough),
        (b.report.forward_passthrough, b.report.backward_passthrough)
    );

    // The part is what the check reads: another layer's gives that layer's tallies.
    let targets: Vec<Option<usize>> = a.report.targets.clone();
    // (the same layer with its forward unrounded: every pass-through element exact)
    let mut other = case.clone();
    let exact = cosface(n, c, 1.0, &[]);
    for (v, x) in other
        .forward
        .as_mut()
        .unwrap()
        .iter_mut()
        .zip(exact.forward.unwrap())
    {
        *v = 64.0 * x;
    }
    let mixed = reusing(&case, prof, &part_of(&other, &targets, dtype));
    assert_eq!(
        mixed.report.forward_passthrough,
        fresh(&other, prof).report.forward_passthrough
    );
    assert_ne!(
        mixed.report.forward_passthrough,
        a.report.forward_passthrough
    );

    // Refused: an out-of-budget pass-through element must be listed by the check itself.
    let bad = cosface_f32_scaled(n, c, 1.01, &[3]);
    let (a, b) = (
        fresh(&bad, prof),
        reusing(&bad, prof, &part_of(&bad, &targets, dtype)),
    );
    assert_ne!(a.verdict(), deviation::Verdict::Pass);
    assert_eq!(digest(&a), digest(&b));
    assert_eq!(a.report.elements, b.report.elements);
    // Refused: a profile that transforms non-targets makes another pass.
    let mut round_trip = prof.clone();
    round_trip.round_trip.non_targets = true;
    let (a, b) = (fresh(&case, &round_trip), reusing(&case, &round_trip, part));
    assert_eq!(digest(&a), digest(&b));
    assert_eq!(
        (a.report.forward_passthrough, a.report.backward_passthrough),
        (b.report.forward_passthrough, b.report.backward_passthrough)
    );
}

/// A bounded case with out-of-budget non-targets is searched on the rows a check diagnoses
/// (SPEC.md §8.5), not with a pass over every entry per non-target candidate: the planted
/// rows are found by the search's first pass, the first of them scored, and the report says
/// so; the check after it still tallies every element.
#[test]
fn a_bounded_search_with_failing_non_targets_scores_the_diagnosed_rows() {
    use combined_margin::report::{search_json, search_text};
    use combined_margin::verdict::search::{self, ScoredRows};
    let (n, c) = (18, 60_000);
    let case = cosface(n, c, 1.01, &[0, 5, 17]);
    let dtype = combined_margin::dtype::Dtype::F64;
    let found = search::search(std::slice::from_ref(&case), dtype).unwrap();
    let part = found.passthrough[0]
        .as_ref()
        .expect("the first pass's part");
    assert_eq!(part.failing_rows(), &[0, 5, 17]);
    assert_eq!(
        found.scored_rows,
        vec![Some(ScoredRows {
            rows: vec![0, 5],
            n
        })]
    );
    let text = search_text("big", &found);
    assert!(text.contains("searched on 2 of 18 rows (0..=5)"), "{text}");
    assert_eq!(
        search_json("big", &found)["scored_rows"][0]["rows"],
        serde_json::json!([0, 5])
    );
    // Nothing to reuse (the part has out-of-budget elements): the check is a fresh one.
    let prof = &found.best().profile;
    let fresh = deviation::check(&case, prof, dtype, &Declared::default()).unwrap();
    let after = deviation::check_reusing(
        &case,
        prof,
        dtype,
        &Declared::default(),
        Detail::Bounded,
        Some(part),
    )
    .unwrap();
    assert_eq!(digest(&fresh), digest(&after));
    assert_eq!(after.report.count(), 2 * n * c);
    assert_ne!(after.verdict(), deviation::Verdict::Pass);
}

/// A single row over 2^20 classes is its own diagnosed subset: it is searched whole (the
/// subset search only ever narrows a case, so it never recurses on itself).
#[test]
fn a_single_bounded_row_is_searched_whole() {
    use combined_margin::compare::EVERY_ELEMENT_MAX;
    use combined_margin::verdict::search;
    let case = cosface(1, EVERY_ELEMENT_MAX + 1, 1.01, &[0]);
    let dtype = combined_margin::dtype::Dtype::F64;
    let found = search::search(std::slice::from_ref(&case), dtype).unwrap();
    assert_eq!(
        found.passthrough[0]
            .as_ref()
            .map(|p| p.failing_rows().to_vec()),
        Some(vec![0])
    );
    assert!(found.scored_rows.is_empty(), "{:?}", found.scored_rows);
}

/// The Python package's bounded check keeps every element's fraction and budget as arrays
/// (SPEC.md §8.5): they equal the complete comparison's per-element records bit for bit, and
/// the rest of the report is the plain bounded one.
#[test]
fn a_bounded_check_keeps_every_fraction_and_budget_as_arrays() {
    use combined_margin::compare::{self, Side};
    let (n, c) = (18, 60_000);
    let case = cosface_f32_scaled(n, c, 1.01, &[0, 5, 17]);
    let dtype = combined_margin::dtype::Dtype::F32;
    let prof = Profile::preset("analytic").unwrap();
    let p = compare::output_params(&case);
    let every = compare::compare_with_detail(&case, &prof, &p, dtype, Detail::Every).unwrap();
    let bounded = compare::compare_with_detail(&case, &prof, &p, dtype, Detail::Bounded).unwrap();
    let kept = compare::compare_keeping_arrays(&case, &prof, &p, dtype).unwrap();
    let arrays = kept.arrays.clone().expect("arrays kept");
    let (ff, fb) = arrays.forward.expect("a forward side");
    let (bf, bb) = arrays.backward.expect("a backward side");
    assert_eq!(every.elements.len(), 2 * n * c);
    for e in &every.elements {
        let i = e.row * c + e.col;
        let (f, b) = match e.side {
            Side::Forward => (ff[i], fb[i]),
            Side::Backward => (bf[i], bb[i]),
        };
        assert_eq!(
            (f.to_bits(), b.to_bits()),
            (e.fraction.to_bits(), e.budget.to_bits()),
            "{:?} ({}, {})",
            e.side,
            e.row,
            e.col
        );
    }
    assert!(ff.iter().any(|&f| f > 1.0), "the planted rows fail");
    let mut plain = kept.clone();
    plain.arrays = None;
    assert_eq!(plain.elements, bounded.elements);
    assert_eq!(
        (plain.tallies().map(|(_, t)| *t), plain.unlisted),
        (bounded.tallies().map(|(_, t)| *t), bounded.unlisted)
    );
    // The check keeps them too, and diagnoses as the plain bounded check does.
    let ck = deviation::check_keeping_arrays(&case, &prof, dtype, &Declared::default()).unwrap();
    let plain_ck =
        deviation::check_with(&case, &prof, dtype, &Declared::default(), Detail::Bounded).unwrap();
    assert!(ck.report.arrays.is_some());
    assert_eq!(digest(&ck), digest(&plain_ck));
}
