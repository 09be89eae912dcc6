//! A sweep's result as an aligned text table (people) and as JSON (machines). Both carry the
//! same numbers; non-finite values are written as the strings "inf"/"nan" in JSON, which has
//! no literal for them.

use super::summary::{Histogram, Max, Point, Stats};
use super::{Sweep, Verdict};
use serde_json::{json, Value};

fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else if x.is_nan() {
        json!("nan")
    } else if x > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}

fn fmt_num(x: f64, prec: usize) -> String {
    if x.is_finite() {
        format!("{x:.prec$}")
    } else {
        format!("{x}")
    }
}

fn max_json(s: &Sweep, m: &Max) -> Value {
    if !m.is_set() {
        return Value::Null;
    }
    json!({"value": num(m.value), "c": num(m.c), "c_decimal": s.grid.decimal(m.c), "c_hex": s.grid.hex(m.c)})
}

fn stats_json(s: &Sweep, st: &Stats) -> Value {
    json!({
        "inputs": st.count,
        "fails": st.fails,
        "nonfinite_mismatch": st.nonfinite_mismatch,
        "max_forward_fraction": max_json(s, &st.fwd_frac),
        "max_backward_fraction": max_json(s, &st.bwd_frac),
        "max_forward_ulp": max_json(s, &st.fwd_ulp),
        "max_backward_ulp": max_json(s, &st.bwd_ulp),
    })
}

fn hist_json(h: &Histogram) -> Value {
    let bins: Vec<Value> = Histogram::labels()
        .into_iter()
        .zip(&h.bins)
        .map(|(l, n)| json!({"ulp": l, "count": n}))
        .collect();
    json!({"bins": bins, "nonfinite_mismatch": h.nonfinite_mismatch})
}

fn point_json(s: &Sweep, p: &Point) -> Value {
    json!({
        "c": num(p.c), "c_decimal": s.grid.decimal(p.c), "c_hex": s.grid.hex(p.c),
        "region": s.regions[p.region].name,
        "reference_out": num(p.ref_out), "got_out": num(p.got_out),
        "forward_fraction": num(p.fwd_frac), "forward_ulp": num(p.fwd_ulp),
        "reference_factor": num(p.ref_factor), "got_factor": num(p.got_factor),
        "backward_fraction": num(p.bwd_frac), "backward_ulp": num(p.bwd_ulp),
    })
}

/// Whether the inputs are the complete set, a strided one, or a range, in words; one line
/// per kind of segment (the main range, the bands, the windows around kinks).
pub fn describe_inputs(s: &Sweep) -> String {
    let g = s.grid.name();
    let mut kinds: Vec<(&str, u64, u64, i64, i64, usize)> = Vec::new();
    for seg in &s.inputs.segments {
        match kinds.iter_mut().find(|k| k.0 == seg.what) {
            Some(k) => {
                k.2 += seg.len();
                k.3 = k.3.min(seg.lo);
                k.4 = k.4.max(seg.hi);
                k.5 += 1;
            }
            None => kinds.push((seg.what, seg.stride, seg.len(), seg.lo, seg.hi, 1)),
        }
    }
    let lines: Vec<String> = kinds
        .iter()
        .map(|&(what, stride, n, lo, hi, pieces)| {
            let every = if stride == 1 {
                "every float".to_string()
            } else {
                format!("every {stride}th float")
            };
            let span = if what == "near a kink" {
                format!("within {} ulp of each kink ({pieces} windows)", s.kink_ulps)
            } else {
                format!(
                    "in [{}, {}]",
                    s.grid.decimal(s.grid.value(lo)),
                    s.grid.decimal(s.grid.value(hi))
                )
            };
            format!("{what}: {every} {span}, {n} inputs")
        })
        .collect();
    let head = if s.complete() {
        format!(
            "complete: every {g} value in [-1, 1] (both zeros) and {} beyond each of -1 and 1",
            s.inputs.band
        )
    } else if s.inputs.complete {
        "every value planned, not all evaluated".to_string()
    } else {
        format!("a subset of the {g} values (strided or ranged): not a complete sweep")
    };
    format!("{head}\n  {}", lines.join("\n  "))
}

/// The JSON report. `run` holds what is not a function of the inputs (seconds, threads).
pub fn to_json(s: &Sweep, run: Value) -> Value {
    let v = s.verdict();
    let regions: Vec<Value> = s
        .regions
        .iter()
        .zip(&s.acc.regions)
        .map(|(r, st)| {
            let mut o = stats_json(s, st);
            o["region"] = json!(r.name);
            if let Some((kind, c, _)) = r.kink {
                o["kink"] = json!({"kind": kind, "c": num(c), "c_hex": s.grid.hex(c), "within_ulps": s.kink_ulps});
            }
            o
        })
        .collect();
    json!({
        "impl": s.impl_name,
        "profile": s.profile,
        "params": {"m1": s.params.m1, "m2": s.params.m2, "m3": s.params.m3},
        "params_used": {"m1": s.params_used.m1, "m2": s.params_used.m2, "m3": s.params_used.m3},
        "dtype": s.grid.name(),
        "inputs": {
            "planned": s.planned,
            "evaluated": s.evaluated(),
            "complete": s.complete(),
            "stride": s.inputs.stride,
            "band": s.inputs.band,
            "segments": s.inputs.segments.iter().map(|seg| json!({
                "what": seg.what, "lo": num(s.grid.value(seg.lo)), "hi": num(s.grid.value(seg.hi)),
                "lo_hex": s.grid.hex(s.grid.value(seg.lo)), "hi_hex": s.grid.hex(s.grid.value(seg.hi)),
                "stride": seg.stride, "inputs": seg.len()})).collect::<Vec<_>>(),
        },
        "interrupted": s.interrupted,
        "verdict": v.word(),
        "exit_code": v.exit_code(),
        "all": stats_json(s, &s.acc.all),
        "regions": regions,
        "histogram_forward_ulp": hist_json(&s.acc.hist_fwd),
        "histogram_backward_ulp": hist_json(&s.acc.hist_bwd),
        "worst": s.acc.worst.iter().map(|p| point_json(s, p)).collect::<Vec<_>>(),
        "run": run,
    })
}

/// Left-aligned first column, right-aligned others, two spaces apart, a dashed rule.
fn align(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let w: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = w[i] - c.chars().count();
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push_str(&line(w.iter().map(|&k| "-".repeat(k)).collect()));
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn at(s: &Sweep, m: &Max, prec: usize) -> String {
    if m.is_set() {
        format!(
            "{} at c = {} ({})",
            fmt_num(m.value, prec),
            s.grid.decimal(m.c),
            s.grid.hex(m.c)
        )
    } else {
        "-".into()
    }
}

/// The text report: header, verdict, maxima with their inputs, per-region table, ulp
/// histogram, the worst inputs. `seconds` is printed if given.
pub fn table(s: &Sweep, seconds: Option<f64>) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "sweep of {} against the f64 reference: profile {}, (m1, m2, m3) = ({}, {}, {}) as {} ({}, {}, {}), dtype {}\n",
        s.impl_name, s.profile, s.params.m1, s.params.m2, s.params.m3, s.grid.name(),
        s.params_used.m1, s.params_used.m2, s.params_used.m3, s.grid.name()
    ));
    o.push_str(&format!("inputs: {}\n", describe_inputs(s)));
    o.push_str(&format!(
        "evaluated {} of {} inputs{}{}\n\n",
        s.evaluated(),
        s.planned,
        if s.interrupted {
            " (interrupted: partial result)"
        } else {
            ""
        },
        seconds.map_or(String::new(), |t| format!(" in {t:.1} s"))
    ));
    let a = &s.acc.all;
    o.push_str(&format!(
        "max forward budget fraction   {}\n",
        at(s, &a.fwd_frac, 4)
    ));
    o.push_str(&format!(
        "max forward ulp error         {}\n",
        at(s, &a.fwd_ulp, 3)
    ));
    o.push_str(&format!(
        "max backward budget fraction  {}\n",
        at(s, &a.bwd_frac, 4)
    ));
    o.push_str(&format!(
        "max backward ulp error        {}\n",
        at(s, &a.bwd_ulp, 3)
    ));
    o.push_str(&format!(
        "over budget: {}   non-finite mismatches: {}\n\n",
        a.fails, a.nonfinite_mismatch
    ));

    let rows: Vec<Vec<String>> = s
        .regions
        .iter()
        .zip(&s.acc.regions)
        .map(|(r, st)| {
            let v = |m: &Max, p| {
                if m.is_set() {
                    fmt_num(m.value, p)
                } else {
                    "-".into()
                }
            };
            vec![
                r.name.clone(),
                st.count.to_string(),
                st.fails.to_string(),
                st.nonfinite_mismatch.to_string(),
                v(&st.fwd_frac, 4),
                v(&st.fwd_ulp, 3),
                v(&st.bwd_frac, 4),
                v(&st.bwd_ulp, 3),
            ]
        })
        .collect();
    o.push_str(&format!(
        "Per region (a kink's region: within {} ulp of it):\n",
        s.kink_ulps
    ));
    o.push_str(&align(
        &[
            "region",
            "inputs",
            "over budget",
            "non-finite",
            "fwd fraction",
            "fwd ulp",
            "bwd fraction",
            "bwd ulp",
        ],
        &rows,
    ));

    let labels = Histogram::labels();
    let mut hrows: Vec<Vec<String>> = labels
        .iter()
        .zip(s.acc.hist_fwd.bins.iter().zip(&s.acc.hist_bwd.bins))
        .filter(|(_, (f, b))| **f + **b > 0)
        .map(|(l, (f, b))| vec![l.clone(), f.to_string(), b.to_string()])
        .collect();
    hrows.push(vec![
        "non-finite mismatch".into(),
        s.acc.hist_fwd.nonfinite_mismatch.to_string(),
        s.acc.hist_bwd.nonfinite_mismatch.to_string(),
    ]);
    o.push_str("\nulp error histogram (empty bins omitted):\n");
    o.push_str(&align(&["ulp error", "forward", "backward"], &hrows));

    let wrows: Vec<Vec<String>> = s
        .acc
        .worst
        .iter()
        .map(|p| {
            vec![
                s.grid.decimal(p.c),
                s.grid.hex(p.c),
                s.regions[p.region].name.clone(),
                format!("{:e}", p.ref_out),
                format!("{:e}", p.got_out),
                fmt_num(p.fwd_frac, 4),
                fmt_num(p.fwd_ulp, 3),
                format!("{:e}", p.ref_factor),
                format!("{:e}", p.got_factor),
                fmt_num(p.bwd_frac, 4),
                fmt_num(p.bwd_ulp, 3),
            ]
        })
        .collect();
    o.push_str(&format!(
        "\nthe {} worst inputs (by budget fraction, then ulp):\n",
        wrows.len()
    ));
    o.push_str(&align(
        &[
            "c",
            "hex",
            "region",
            "ref out",
            "got out",
            "fwd frac",
            "fwd ulp",
            "ref factor",
            "got factor",
            "bwd frac",
            "bwd ulp",
        ],
        &wrows,
    ));
    let v = s.verdict();
    o.push_str(&format!(
        "\nverdict: {}{}\n",
        v.word(),
        match v {
            Verdict::Pass =>
                if s.complete() {
                    " (complete sweep: every input within budget)"
                } else {
                    " (every input evaluated within budget)"
                },
            Verdict::Fail => " (inputs over budget or non-finite mismatches above)",
            Verdict::Interrupted => " (partial: no failure among the inputs evaluated)",
        }
    ));
    o
}
