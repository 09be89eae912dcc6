//! Aggregation of a sweep: per-input errors folded into maxima, counts and a histogram.
//!
//! Every merge is exactly associative and commutative (integer counts; maxima with ties
//! broken by the smaller ordinal; the worst-inputs list sorted by a total order), so the
//! result does not depend on how rayon splits or orders the chunks: the same inputs give the
//! same bits on 1 thread or 16.

use serde::Serialize;

/// Upper edges (inclusive) of the ulp-error histogram's finite bins, after an "exact" bin
/// (error 0). A last bin counts finite errors above the largest edge; non-finite mismatches
/// have their own count.
pub const HIST_EDGES: [f64; 12] = [
    0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 65536.0, 1048576.0,
];

/// How many worst inputs a sweep keeps.
pub const WORST: usize = 10;

/// One compared input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub ord: i64,
    pub c: f64,
    pub ref_out: f64,
    pub got_out: f64,
    pub ref_factor: f64,
    pub got_factor: f64,
    /// |got − ref| / budget (≤ 1 passes; +inf for a non-finite mismatch or a nonzero error
    /// against a zero budget).
    pub fwd_frac: f64,
    pub bwd_frac: f64,
    /// |got − ref| / ulp_T(ref) (+inf for a non-finite mismatch).
    pub fwd_ulp: f64,
    pub bwd_ulp: f64,
    pub fwd_nonfinite: bool,
    pub bwd_nonfinite: bool,
    /// Index into the sweep's region list.
    pub region: usize,
}

impl Point {
    /// The ranking key of the worst-inputs list: larger fraction first, then larger ulp
    /// error, then the smaller ordinal (a total order on points of distinct ordinals).
    fn worse_than(&self, o: &Point) -> bool {
        let a = (
            self.fwd_frac.max(self.bwd_frac),
            self.fwd_ulp.max(self.bwd_ulp),
        );
        let b = (o.fwd_frac.max(o.bwd_frac), o.fwd_ulp.max(o.bwd_ulp));
        match a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.ord < o.ord,
        }
    }
}

/// A maximum and the input where it is reached (the smallest ordinal among ties).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Max {
    pub value: f64,
    pub ord: i64,
    pub c: f64,
}

impl Max {
    pub const NONE: Max = Max {
        value: f64::NEG_INFINITY,
        ord: i64::MAX,
        c: f64::NAN,
    };
    fn offer(&mut self, value: f64, ord: i64, c: f64) {
        // NaN never reaches here (fractions and ulps of NaN are +inf or 0 by construction),
        // but a NaN would be ranked as worst rather than lost.
        let value = if value.is_nan() { f64::INFINITY } else { value };
        if value > self.value || (value == self.value && ord < self.ord) {
            *self = Max { value, ord, c };
        }
    }
    fn merge(&mut self, o: &Max) {
        self.offer(o.value, o.ord, o.c);
    }
    pub fn is_set(&self) -> bool {
        self.ord != i64::MAX
    }
}

/// Counts of ulp errors by bin: `[exact, ≤ HIST_EDGES[0], …, ≤ HIST_EDGES[11], > last]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Histogram {
    pub bins: Vec<u64>,
    pub nonfinite_mismatch: u64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            bins: vec![0; HIST_EDGES.len() + 2],
            nonfinite_mismatch: 0,
        }
    }
    fn add(&mut self, ulp: f64, nonfinite: bool) {
        if nonfinite {
            self.nonfinite_mismatch += 1;
            return;
        }
        let i = if ulp == 0.0 {
            0
        } else {
            1 + HIST_EDGES
                .iter()
                .position(|&e| ulp <= e)
                .unwrap_or(HIST_EDGES.len())
        };
        self.bins[i] += 1;
    }
    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.bins.iter_mut().zip(&o.bins) {
            *a += b;
        }
        self.nonfinite_mismatch += o.nonfinite_mismatch;
    }
    /// Bin labels, in `bins` order.
    pub fn labels() -> Vec<String> {
        let mut v = vec!["0".to_string()];
        let mut prev = 0.0;
        for e in HIST_EDGES {
            v.push(format!("({prev}, {e}]"));
            prev = e;
        }
        v.push(format!("> {prev}"));
        v
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

/// Maxima and counts over a set of inputs (the whole sweep, or one region).
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub count: u64,
    /// Inputs with a forward or backward fraction > 1.
    pub fails: u64,
    /// Inputs where the reference or the implementation is non-finite and they differ
    /// (forward or backward).
    pub nonfinite_mismatch: u64,
    pub fwd_frac: Max,
    pub bwd_frac: Max,
    pub fwd_ulp: Max,
    pub bwd_ulp: Max,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            count: 0,
            fails: 0,
            nonfinite_mismatch: 0,
            fwd_frac: Max::NONE,
            bwd_frac: Max::NONE,
            fwd_ulp: Max::NONE,
            bwd_ulp: Max::NONE,
        }
    }
    fn add(&mut self, p: &Point) {
        self.count += 1;
        self.fails += (p.fwd_frac > 1.0 || p.bwd_frac > 1.0) as u64;
        self.nonfinite_mismatch += (p.fwd_nonfinite || p.bwd_nonfinite) as u64;
        self.fwd_frac.offer(p.fwd_frac, p.ord, p.c);
        self.bwd_frac.offer(p.bwd_frac, p.ord, p.c);
        self.fwd_ulp.offer(p.fwd_ulp, p.ord, p.c);
        self.bwd_ulp.offer(p.bwd_ulp, p.ord, p.c);
    }
    fn merge(&mut self, o: &Stats) {
        self.count += o.count;
        self.fails += o.fails;
        self.nonfinite_mismatch += o.nonfinite_mismatch;
        self.fwd_frac.merge(&o.fwd_frac);
        self.bwd_frac.merge(&o.bwd_frac);
        self.fwd_ulp.merge(&o.fwd_ulp);
        self.bwd_ulp.merge(&o.bwd_ulp);
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// Everything a sweep accumulates; one per chunk, merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Acc {
    pub all: Stats,
    pub regions: Vec<Stats>,
    pub hist_fwd: Histogram,
    pub hist_bwd: Histogram,
    /// The worst inputs, worst first, at most [`WORST`].
    pub worst: Vec<Point>,
}

impl Acc {
    pub fn new(regions: usize) -> Acc {
        Acc {
            all: Stats::new(),
            regions: vec![Stats::new(); regions],
            hist_fwd: Histogram::new(),
            hist_bwd: Histogram::new(),
            worst: Vec::with_capacity(WORST + 1),
        }
    }

    pub fn add(&mut self, p: Point) {
        self.all.add(&p);
        self.regions[p.region].add(&p);
        self.hist_fwd.add(p.fwd_ulp, p.fwd_nonfinite);
        self.hist_bwd.add(p.bwd_ulp, p.bwd_nonfinite);
        self.offer_worst(p);
    }

    /// [`Acc::add`] without the totals, which [`Acc::total_from_regions`] then fills once per
    /// chunk: every point lies in exactly one region and every merge is exact, so the totals
    /// are the same bits (half the maxima offered per input).
    pub(crate) fn add_in_region(&mut self, p: Point) {
        self.regions[p.region].add(&p);
        self.hist_fwd.add(p.fwd_ulp, p.fwd_nonfinite);
        self.hist_bwd.add(p.bwd_ulp, p.bwd_nonfinite);
        self.offer_worst(p);
    }

    /// The totals as the merge of the regions (after [`Acc::add_in_region`] only).
    pub(crate) fn total_from_regions(&mut self) {
        let mut all = Stats::new();
        for r in &self.regions {
            all.merge(r);
        }
        self.all = all;
    }

    fn offer_worst(&mut self, p: Point) {
        if self.worst.len() == WORST && !p.worse_than(&self.worst[WORST - 1]) {
            return;
        }
        let at = self
            .worst
            .iter()
            .position(|w| p.worse_than(w))
            .unwrap_or(self.worst.len());
        self.worst.insert(at, p);
        self.worst.truncate(WORST);
    }

    pub fn merge(mut self, o: Acc) -> Acc {
        self.all.merge(&o.all);
        for (a, b) in self.regions.iter_mut().zip(&o.regions) {
            a.merge(b);
        }
        self.hist_fwd.merge(&o.hist_fwd);
        self.hist_bwd.merge(&o.hist_bwd);
        for p in o.worst {
            self.offer_worst(p);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_from_regions_equal_totals_added_point_by_point() {
        // Ties on purpose (values from a small set) so that the smaller-ordinal rule is hit.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut a, mut b) = (Acc::new(4), Acc::new(4));
        for i in 0..5000i64 {
            let v = |r: u64| [0.0, 0.25, 0.5, 1.5, f64::INFINITY][(r % 5) as usize];
            let (r1, r2, r3, r4, r5) = (next(), next(), next(), next(), next());
            let p = Point {
                // Distinct ordinals (as in a sweep), not in input order.
                ord: (i * 7919) % 5003 - 2500,
                c: i as f64,
                ref_out: 0.0,
                got_out: 0.0,
                ref_factor: 0.0,
                got_factor: 0.0,
                fwd_frac: v(r1),
                bwd_frac: v(r2),
                fwd_ulp: v(r3),
                bwd_ulp: v(r4),
                fwd_nonfinite: r1 % 11 == 0,
                bwd_nonfinite: r2 % 13 == 0,
                region: (r5 % 4) as usize,
            };
            a.add(p);
            b.add_in_region(p);
        }
        b.total_from_regions();
        assert_eq!(a, b);
        assert!(a.all.fails > 0 && a.all.fwd_frac.value == f64::INFINITY);
    }
}
