//! Pictures of the margin (`cmargin plot`, SPEC.md §7.5): (a) the target logit
//! `out(θ)` against θ in degrees over [0°, 180°], (b) the backward factor `d out / d c`
//! against c = cos θ over [−1, 1], one curve per profile, kinks marked.
//!
//! The curves are [`margin::eval`] sampled uniformly plus densely on both sides of every
//! kink ([`kinks::kinks`]) and, for the factor, towards c = ±1; a curve is broken (not
//! joined by a vertical segment) where the branch changes or a value is not finite. Factors
//! outside the plotted range are drawn at its edge and listed in the notes under the panels.

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::kinks::{kinks, Kink, Smoothness};
use crate::margin::{self, Branch};
use crate::params::Params;
use crate::profile::Profile;
use plotters::prelude::*;

/// What to draw.
#[derive(Clone, Debug)]
pub struct PlotSpec {
    pub profiles: Vec<Profile>,
    pub params: Params,
    /// Precision whose rounding of the profile constants the curves use.
    pub dtype: Dtype,
    /// Vertical range of the factor panel; values outside are drawn at its edge.
    pub factor_range: (f64, f64),
}

impl PlotSpec {
    /// The default picture: analytic, caffe-gpu, arcface-thmm, recommended at ArcFace (1, 0.5, 0).
    pub fn default_profiles() -> Vec<Profile> {
        ["analytic", "caffe-gpu", "arcface-thmm", "recommended"]
            .iter()
            .map(|n| Profile::preset(n).expect("preset"))
            .collect()
    }
}

/// One sampled point: x (degrees or cos), the value, and the branch that produced it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub x: f64,
    pub y: f64,
    pub branch: Branch,
}

/// Offsets on either side of a kink, in the panel's x unit: 10⁻¹ down to 10⁻⁹.
const NEAR: [f64; 9] = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9];
/// Uniform samples per panel.
const UNIFORM: usize = 360;

fn sort_dedup(mut xs: Vec<f64>, lo: f64, hi: f64) -> Vec<f64> {
    xs.retain(|x| x.is_finite() && *x >= lo && *x <= hi);
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.dedup();
    xs
}

/// θ in degrees where the forward panel evaluates: uniform, plus both sides of each kink.
pub fn theta_samples(ks: &[Kink]) -> Vec<f64> {
    let mut t: Vec<f64> = (0..=UNIFORM)
        .map(|i| 180.0 * i as f64 / UNIFORM as f64)
        .collect();
    for k in ks {
        let deg = k.c.clamp(-1.0, 1.0).acos().to_degrees();
        t.push(deg);
        for d in NEAR {
            t.push(deg - d);
            t.push(deg + d);
        }
    }
    sort_dedup(t, 0.0, 180.0)
}

/// c where the factor panel evaluates: uniform, both sides of each kink, and c = ±(1 − 10⁻ᵏ).
pub fn cos_samples(ks: &[Kink]) -> Vec<f64> {
    let mut c: Vec<f64> = (0..=UNIFORM)
        .map(|i| -1.0 + 2.0 * i as f64 / UNIFORM as f64)
        .collect();
    for k in ks {
        c.push(k.c);
        for d in NEAR {
            c.push(k.c - d);
            c.push(k.c + d);
        }
    }
    for e in 1..=12 {
        let d = 10f64.powi(-e);
        c.push(1.0 - d);
        c.push(-1.0 + d);
    }
    sort_dedup(c, -1.0, 1.0)
}

/// The forward panel's curve of one profile: (θ°, out) samples.
pub fn forward_curve(profile: &Profile, p: &Params, dtype: Dtype) -> Vec<Sample> {
    theta_samples(&kinks(profile, p, dtype))
        .into_iter()
        .map(|deg| {
            let e = margin::eval(deg.to_radians().cos(), p, profile, dtype);
            Sample {
                x: deg,
                y: e.out,
                branch: e.branch,
            }
        })
        .collect()
}

/// The factor panel's curve of one profile: (c, factor) samples.
pub fn factor_curve(profile: &Profile, p: &Params, dtype: Dtype) -> Vec<Sample> {
    cos_samples(&kinks(profile, p, dtype))
        .into_iter()
        .map(|c| {
            let e = margin::eval(c, p, profile, dtype);
            Sample {
                x: c,
                y: e.factor,
                branch: e.branch,
            }
        })
        .collect()
}

/// Splits a curve where the branch changes or a value is not finite; values are clamped
/// into [lo, hi] (the caller lists what was clamped).
pub fn segments(s: &[Sample], lo: f64, hi: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let mut prev: Option<Branch> = None;
    for p in s {
        let breaks = p.y.is_nan() || prev.is_some_and(|b| b != p.branch);
        if breaks && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev = Some(p.branch);
        if !p.y.is_nan() {
            cur.push((p.x, p.y.clamp(lo, hi)));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Where a curve leaves [lo, hi] or is NaN, in words: "analytic: factor +inf at c = 1".
fn out_of_range_notes(name: &str, s: &[Sample], lo: f64, hi: f64, what: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let above: Vec<&Sample> = s.iter().filter(|p| p.y > hi).collect();
    let below: Vec<&Sample> = s.iter().filter(|p| p.y < lo).collect();
    let nan: Vec<&Sample> = s.iter().filter(|p| p.y.is_nan()).collect();
    let span = |v: &[&Sample]| {
        let a = v.iter().map(|p| p.x).fold(f64::INFINITY, f64::min);
        let b = v.iter().map(|p| p.x).fold(f64::NEG_INFINITY, f64::max);
        if a == b {
            format!("at c = {a:+.6}")
        } else {
            format!("for c in [{a:+.6}, {b:+.6}]")
        }
    };
    if !above.is_empty() {
        let m = above.iter().map(|p| p.y).fold(f64::NEG_INFINITY, f64::max);
        notes.push(format!(
            "{name}: {what} above {hi} {} (max {}), drawn at {hi}",
            span(&above),
            fmt_val(m)
        ));
    }
    if !below.is_empty() {
        let m = below.iter().map(|p| p.y).fold(f64::INFINITY, f64::min);
        notes.push(format!(
            "{name}: {what} below {lo} {} (min {}), drawn at {lo}",
            span(&below),
            fmt_val(m)
        ));
    }
    if !nan.is_empty() {
        notes.push(format!("{name}: {what} NaN {} (not drawn)", span(&nan)));
    }
    notes
}

fn fmt_val(x: f64) -> String {
    if x.is_infinite() {
        if x > 0.0 { "+inf" } else { "-inf" }.into()
    } else {
        format!("{x:.4}")
    }
}

/// A short tag for a kink in the panels; the notes give the full name.
fn short(k: &Kink) -> &'static str {
    use crate::kinks::KinkKind::*;
    match k.kind {
        DomainClampLow | DomainClampHigh => "clamp c",
        PoleLow | PoleHigh => "pole",
        DomainEndLow | DomainEndHigh => "end",
        AngleClampHigh | AngleClampLow => "clamp phi",
        Threshold => "th",
        FactorClipHigh | FactorClipLow => "clip",
        Turn => "turn",
        MonotoneJoin => "join",
        OutputClipHigh | OutputClipLow => "clip out",
    }
}

/// Line width of profile i of n: the first drawn is the widest, so a curve that coincides
/// with a later one still shows as a coloured rim around it.
fn width_of(i: usize, n: usize) -> u32 {
    2 + 2 * (n - 1 - i) as u32
}

/// Tick labels without "-0.0".
fn tick(x: &f64) -> String {
    let x = if x.abs() < 1e-9 { 0.0 } else { *x };
    format!("{x:.1}")
}

const COLORS: [RGBColor; 7] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

/// The plot as an SVG document: the two panels, a legend each, and notes listing every
/// kink (with its number, as tagged in the panels) and every value drawn clipped.
pub fn render_svg(spec: &PlotSpec) -> Result<String> {
    spec.params.validate()?;
    if spec.profiles.is_empty() {
        return Err(Error::Invalid("no profile to plot".into()));
    }
    if spec.profiles.len() > COLORS.len() {
        return Err(Error::Invalid(format!(
            "at most {} profiles fit one plot",
            COLORS.len()
        )));
    }
    let (flo, fhi) = spec.factor_range;
    if !(flo.is_finite() && fhi.is_finite() && flo < fhi) {
        return Err(Error::Invalid(format!(
            "factor range [{flo}, {fhi}] must be finite with lo < hi"
        )));
    }
    let p = &spec.params;
    let dt = spec.dtype;
    let all_kinks: Vec<Vec<Kink>> = spec.profiles.iter().map(|pr| kinks(pr, p, dt)).collect();
    let fwd: Vec<Vec<Sample>> = spec
        .profiles
        .iter()
        .map(|pr| forward_curve(pr, p, dt))
        .collect();
    let fac: Vec<Vec<Sample>> = spec
        .profiles
        .iter()
        .map(|pr| factor_curve(pr, p, dt))
        .collect();

    // Notes: numbered kinks, then clipped values.
    let mut kink_lines = Vec::new();
    let mut numbered: Vec<Vec<(usize, Kink)>> = Vec::new();
    let mut next = 1;
    for (pr, ks) in spec.profiles.iter().zip(&all_kinks) {
        let mut v = Vec::new();
        for k in ks {
            kink_lines.push(format!(
                "[{next}] {}: {}; c = {:+.6}, theta = {:.3} deg{}",
                pr.name,
                k.kind.name(),
                k.c,
                k.c.clamp(-1.0, 1.0).acos().to_degrees(),
                match k.smoothness() {
                    Smoothness::Jump => "; the forward jumps",
                    Smoothness::Corner => "; the forward has a corner",
                    Smoothness::Pole => "; the factor is unbounded",
                    Smoothness::Boundary => "; NaN beyond",
                    Smoothness::GradientCorner => "; the factor has a corner",
                    Smoothness::Smooth => "; smooth, the factor changes sign",
                }
            ));
            v.push((next, *k));
            next += 1;
        }
        numbered.push(v);
    }
    let mut clip_lines = Vec::new();
    for (pr, s) in spec.profiles.iter().zip(&fac) {
        clip_lines.extend(out_of_range_notes(&pr.name, s, flo, fhi, "factor"));
    }

    let finite = fwd.iter().flatten().map(|s| s.y).filter(|y| y.is_finite());
    let (ylo, yhi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    let pad = 0.08 * (yhi - ylo).max(0.1);
    let (ylo, yhi) = (ylo - pad, yhi + pad);
    let nrows = spec.profiles.len();
    let ytop = yhi + 0.07 * nrows as f64 * (yhi - ylo);

    let notes_h = 40 + 17 * (kink_lines.len() + clip_lines.len()) as u32;
    let (w, panel_h) = (1100u32, 560u32);
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (w, 2 * panel_h + notes_h)).into_drawing_area();
        let e = |x: &dyn std::fmt::Display| Error::Invalid(format!("plot: {x}"));
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let (top, rest) = root.split_vertically(panel_h);
        let (bottom, notes) = rest.split_vertically(panel_h);
        let title = format!("Combined margin {p}");

        let names: Vec<&str> = spec.profiles.iter().map(|p| p.name.as_str()).collect();
        // (a) forward against theta. Poles and factor-clip corners are features of the
        // factor, shown in panel (b) only.
        let fwd_marks = numbered
            .iter()
            .map(|v| {
                v.iter()
                    .filter(|(_, k)| {
                        !matches!(
                            k.smoothness(),
                            Smoothness::Pole | Smoothness::GradientCorner
                        )
                    })
                    .map(|(n, k)| (k.c.clamp(-1.0, 1.0).acos().to_degrees(), *n, short(k)))
                    .collect()
            })
            .collect();
        let deg = |x: &f64| format!("{x:.0}");
        draw_panel(
            &top,
            &names,
            Panel {
                caption: format!("{title}: target logit against theta"),
                x: (0.0, 180.0),
                x_desc: "theta (degrees)",
                y_desc: "cos(m1*theta + m2) - m3 (unscaled)",
                x_labels: 19,
                x_fmt: &deg,
                y_data: (ylo, yhi),
                y_top: ytop,
                curves: &fwd,
                marks: fwd_marks,
                legend: SeriesLabelPosition::LowerLeft,
                edge_line: false,
            },
        )
        .map_err(|x| e(&x))?;

        // (b) factor against cos.
        let fac_marks = numbered
            .iter()
            .map(|v| v.iter().map(|(n, k)| (k.c, *n, short(k))).collect())
            .collect();
        draw_panel(
            &bottom,
            &names,
            Panel {
                caption: format!(
                    "{title}: backward factor d out / d cos(theta) against cos(theta)"
                ),
                x: (-1.0, 1.0),
                x_desc: "cos(theta)",
                y_desc: "d out / d cos(theta) (unscaled)",
                x_labels: 11,
                x_fmt: &tick,
                y_data: (flo, fhi),
                y_top: fhi + 0.07 * nrows as f64 * (fhi - flo),
                curves: &fac,
                marks: fac_marks,
                legend: SeriesLabelPosition::UpperMiddle,
                edge_line: true,
            },
        )
        .map_err(|x| e(&x))?;

        // Notes.
        let mut y = 8;
        let font = ("sans-serif", 14).into_font();
        notes
            .draw_text(
                &format!(
                    "Kinks (numbered as tagged above; positions from kinks::kinks, dtype {dt}). \
                     Factor values outside [{flo}, {fhi}] are drawn on the grey line at {fhi} or the axis at {flo}:"
                ),
                &font.clone().style(FontStyle::Bold).color(&BLACK),
                (20, y),
            )
            .map_err(|x| e(&x))?;
        y += 20;
        for (line, col) in kink_lines
            .iter()
            .map(|l| (l, BLACK))
            .chain(clip_lines.iter().map(|l| (l, RGBColor(150, 0, 0))))
        {
            notes
                .draw_text(line, &font.clone().color(&col), (28, y))
                .map_err(|x| e(&x))?;
            y += 17;
        }
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

/// One panel: axes, one curve per profile (clamped into `y_data`), kink marks per profile.
struct Panel<'a> {
    caption: String,
    x: (f64, f64),
    x_desc: &'a str,
    y_desc: &'a str,
    x_labels: usize,
    x_fmt: &'a dyn Fn(&f64) -> String,
    /// Range of the data: curves are clamped into it, kink lines span it.
    y_data: (f64, f64),
    /// Top of the chart; the tag rows sit between `y_data.1` and here.
    y_top: f64,
    curves: &'a [Vec<Sample>],
    marks: Vec<Vec<(f64, usize, &'static str)>>,
    legend: SeriesLabelPosition,
    /// A grey line at `y_data.1`, where clamped values are drawn.
    edge_line: bool,
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    names: &[&str],
    p: Panel<'_>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (ylo, yhi) = p.y_data;
    let mut ch = ChartBuilder::on(area)
        .caption(&p.caption, ("sans-serif", 22))
        .margin(14)
        .margin_right(34)
        .x_label_area_size(46)
        .y_label_area_size(70)
        .build_cartesian_2d(p.x.0..p.x.1, ylo..p.y_top)?;
    ch.configure_mesh()
        .x_desc(p.x_desc)
        .y_desc(p.y_desc)
        .x_labels(p.x_labels)
        .x_label_formatter(p.x_fmt)
        .y_label_formatter(&tick)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(246, 246, 246))
        .draw()?;
    let n = names.len();
    for (i, (name, s)) in names.iter().zip(p.curves).enumerate() {
        let col = COLORS[i];
        for (j, seg) in segments(s, ylo, yhi).into_iter().enumerate() {
            let a = ch.draw_series(LineSeries::new(seg, col.stroke_width(width_of(i, n))))?;
            if j == 0 {
                a.label(name.to_string()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], col.stroke_width(3))
                });
            }
        }
        kink_marks(&mut ch, &p.marks[i], (ylo, yhi), (i, n), col)?;
    }
    if p.edge_line {
        ch.draw_series(std::iter::once(PathElement::new(
            vec![(p.x.0, yhi), (p.x.1, yhi)],
            BLACK.mix(0.4).stroke_width(1),
        )))?;
    }
    ch.configure_series_labels()
        .position(p.legend)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
}

type Chart<'a, 'b, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Dashed vertical lines at the marks' x in the profile's colour, and tags "[n] name" in the
/// profile's own row above the data (`row` of `rows`), so that coinciding kinks of different
/// profiles do not overlap. Marks of one profile closer than 12% of the axis share one tag
/// ("[6,7] clip/clamp c"); tags in the right fifth are anchored on their right.
fn kink_marks<DB: DrawingBackend>(
    ch: &mut Chart<'_, '_, DB>,
    marks: &[(f64, usize, &str)],
    (ylo, yhi): (f64, f64),
    (row, rows): (usize, usize),
    col: RGBColor,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let (xl, xh) = (ch.x_range().start, ch.x_range().end);
    let ytop = ch.y_range().end;
    let y_tag = ytop - (ytop - yhi) / rows as f64 * (row as f64 + 0.5);
    for &(x, _, _) in marks {
        ch.draw_series(DashedLineSeries::new(
            vec![(x, ylo), (x, yhi)],
            4,
            4,
            col.stroke_width(1),
        ))?;
    }
    let mut sorted = marks.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups: Vec<Vec<(f64, usize, &str)>> = Vec::new();
    for m in sorted {
        match groups.last_mut() {
            Some(g) if m.0 - g[0].0 < 0.12 * (xh - xl) => g.push(m),
            _ => groups.push(vec![m]),
        }
    }
    for g in groups {
        let nums: Vec<String> = g.iter().map(|m| m.1.to_string()).collect();
        let mut names: Vec<&str> = g.iter().map(|m| m.2).collect();
        names.dedup();
        let text = format!("[{}] {}", nums.join(","), names.join("/"));
        let right = g[0].0 > xl + 0.8 * (xh - xl);
        let (x, h, dx) = if right {
            (g[g.len() - 1].0, HPos::Right, -6)
        } else {
            (g[0].0, HPos::Left, 6)
        };
        let style = ("sans-serif", 13)
            .into_font()
            .color(&col)
            .pos(Pos::new(h, VPos::Center));
        ch.draw_series(std::iter::once(
            EmptyElement::at((x, y_tag)) + Text::new(text, (dx, 0), style),
        ))?;
    }
    Ok(())
}
