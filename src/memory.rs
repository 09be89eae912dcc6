//! The memory a check may use, for the limits of the fixture readers (SPEC.md §8.5): a file
//! is refused before anything is allocated when the checker's estimated peak for it is above
//! the memory limit, and the message gives the numbers. The figure per element is measured
//! (`scripts/check-scale.py`); the streaming checker of issue 19 lowers it.
//!
//! The limit: `$CMARGIN_MEMORY_LIMIT` (bytes) if set, else the memory available when the
//! process asks (`MemAvailable` in /proc/meminfo), else 8 GiB.

/// Peak bytes of `cmargin check` per element of one array of a layer fixture, measured by
/// `scripts/check-scale.py` at the seed shape 128 × 180,855 f32: 821.7 MB peak RSS for
/// 23,149,440 elements per array, 35.5 bytes. The check holds `cos`, `top_diff` and the two
/// implementation outputs widened to f64 (32 bytes); the comparison is bounded (SPEC.md
/// §8.5). The one place the CLI's figure lives.
pub const CHECK_BYTES_PER_ELEMENT: u64 = 36;

/// Peak bytes of `cmargin generate` per element of one array when every output is `.npz`:
/// cos, top_diff and the reference's forward and backward in f64 (32), and the encoded file
/// of six arrays, up to f64 (48). An estimate from the arrays it holds; the figure measured at
/// 512 × 360,000 is in SPEC.md §8.5.
pub const GENERATE_BYTES_PER_ELEMENT: u64 = 80;

/// Used where /proc/meminfo cannot be read.
pub const FALLBACK_BYTES: u64 = 8 << 30;

/// The environment variable that sets the limit in bytes.
pub const ENV: &str = "CMARGIN_MEMORY_LIMIT";

/// `MemAvailable` of /proc/meminfo in bytes, if the file can be read.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// The limit in bytes and where it comes from.
pub fn limit() -> (u64, &'static str) {
    if let Some(v) = std::env::var(ENV)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&v| v > 0)
    {
        return (v, "$CMARGIN_MEMORY_LIMIT");
    }
    match available() {
        Some(v) => (v, "the memory available"),
        None => (FALLBACK_BYTES, "the default, /proc/meminfo unreadable"),
    }
}

/// Bytes as a person reads them (GB = 1e9 bytes).
pub fn bytes_text(b: u64) -> String {
    if b >= 1_000_000_000 {
        format!("{:.1} GB", b as f64 / 1e9)
    } else if b >= 1_000_000 {
        format!("{:.1} MB", b as f64 / 1e6)
    } else {
        format!("{b} bytes")
    }
}

/// A memory limit and the peak bytes per element it is divided by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub from: &'static str,
    pub per_element: u64,
}

impl MemoryLimit {
    /// The limit now in force, for a command that peaks at `per_element` bytes per element.
    pub fn current(per_element: u64) -> Self {
        let (bytes, from) = limit();
        MemoryLimit {
            bytes,
            from,
            per_element: per_element.max(1),
        }
    }

    /// The most elements per array that fit.
    pub fn max_elements(&self) -> u64 {
        self.bytes / self.per_element
    }

    /// Why `count` elements are refused, with the numbers.
    pub fn why(&self, count: u128) -> String {
        let need = count.saturating_mul(self.per_element as u128);
        let need = u64::try_from(need).unwrap_or(u64::MAX);
        format!(
            "{count} elements need about {} ({} bytes per element), above the memory limit of {} \
             ({}; set ${ENV} in bytes to change it)",
            bytes_text(need),
            self.per_element,
            bytes_text(self.bytes),
            self.from
        )
    }
}
