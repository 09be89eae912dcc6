//! What a dump case records, before it is read as a combined margin (SPEC.md §6.6).
//!
//! FORMAT.md ("Margin families") lets a dump record heads that generalize the combined margin,
//! or are not one, with optional fields. A case is classified by those marks alone:
//!
//! * **not a combined margin** (Circle loss, UniFace, SphereFace2, sigmoid heads): `params`
//!   carries a `margin_family` that is not the combined margin, or the implementation names such
//!   a head. Out of scope: one line names the head; nothing is checked.
//! * **per-row margins** (any of `params.m1`, `m2`, `m3` an array of N numbers: AdaFace,
//!   ElasticFace, MagFace) are a combined margin whose rows each have their own (m1, m2, m3)
//!   (SPEC.md §11.1): checked as below.
//! * **non-target modulation** (CurricularFace's `t_used` /
//!   `t_before_forward` / `t_after_forward` / `curricular_hard_mask`, inter-top-k's
//!   `params.intertopk_k` / `intertopk_m`): a combined margin whose rows' non-targets are
//!   modulated by the row's target (SPEC.md §11.3, [`crate::modulation`]): checked as below.
//! * **loss-only** (`kind: "pipeline"` with `loss` and `d_cos` and neither `margin_logits` nor
//!   `d_margin_logits`: NeMo's `AngularSoftmaxLoss`): checked on the loss and `d_cos`
//!   ([`crate::loss_only`]).
//! * everything else is a **combined margin** and is read by the layer reader as before, with
//!   its located errors for bad input (a case without `params.m1` and without any of the marks
//!   above is bad input, exit 2).
//!
//! Sub-centres (`params.k`) are a combined margin on the matrix after the max over the K
//! sub-centres, which is what `cos` holds; a case that has only `cos_subcenters` [N, C, K]
//! is read through that max ([`crate::layer::subcenter_max`], SPEC.md §11.2).

use crate::deviation::CaseCheck;
use crate::fixture::{DumpKind, FixtureError, RawCase};
use serde_json::Value;

/// One case of a file: checked, or not (with the reason, one line).
#[derive(Clone, Debug)]
pub enum Outcome {
    Checked(Box<CaseCheck>),
    NotChecked { name: String, scope: Scope },
}

impl Outcome {
    pub fn name(&self) -> &str {
        match self {
            Outcome::Checked(ck) => &ck.report.name,
            Outcome::NotChecked { name, .. } => name,
        }
    }

    pub fn checked(&self) -> Option<&CaseCheck> {
        match self {
            Outcome::Checked(ck) => Some(ck.as_ref()),
            Outcome::NotChecked { .. } => None,
        }
    }
}

/// What a case records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A combined-margin layer, or the margin layer of a pipeline: checked.
    CombinedMargin,
    /// cos → loss, with `d_cos`: checked on the loss and `d_cos`.
    LossOnly,
    /// A family member not checked in this setting (per-row margins under the fingerprint).
    NotModelledYet(String),
    /// Not a combined margin at all: out of scope, not checked.
    NotCombinedMargin(String),
}

/// Head names (lower case, as they appear in an implementation string) that are not combined
/// margins. Matched as whole `.`/`:`/`@`-separated tokens, so `SphereFace` is not `SphereFace2`.
const NOT_COMBINED_MARGIN: [(&str, &str); 6] = [
    ("circlesoftmax", "Circle loss (CircleSoftmax)"),
    ("circleloss", "Circle loss"),
    ("circle", "Circle loss"),
    ("uniface", "UniFace"),
    ("sphereface2", "SphereFace2"),
    ("unifiedcrossentropy", "UniFace (unified cross-entropy)"),
];

impl Scope {
    /// Whether the case is checked (combined margin or loss-only).
    pub fn modelled(&self) -> bool {
        match self {
            Scope::CombinedMargin | Scope::LossOnly => true,
            Scope::NotModelledYet(_) | Scope::NotCombinedMargin(_) => false,
        }
    }

    /// The one line a report prints for a case that is not checked.
    pub fn line(&self) -> String {
        match self {
            Scope::CombinedMargin => "combined margin".into(),
            Scope::LossOnly => "loss-only (cos -> loss, d_cos)".into(),
            Scope::NotModelledYet(what) => {
                format!("{what}: not modelled yet (issue 17); not checked")
            }
            Scope::NotCombinedMargin(head) => format!(
                "{head}: not a combined margin; not modelled (out of scope: Circle loss, UniFace, SphereFace2); not checked"
            ),
        }
    }
}

/// The head an implementation string names, if it is one of [`NOT_COMBINED_MARGIN`].
fn named_non_cm_head(implementation: &str) -> Option<&'static str> {
    let lower = implementation.to_ascii_lowercase();
    let tokens: Vec<&str> = lower
        .split(['.', ':', '@', '/', ' '])
        .filter(|t| !t.is_empty())
        .collect();
    NOT_COMBINED_MARGIN
        .iter()
        .find(|(name, _)| tokens.contains(name))
        .map(|(_, head)| *head)
}

/// Classifies one case of a dump of `kind` by `implementation` (see the module doc). Errors
/// only for a mark that is itself malformed (a per-row margin array holding a non-number).
pub fn classify(
    kind: DumpKind,
    implementation: &str,
    raw: &RawCase,
) -> Result<Scope, FixtureError> {
    let params = raw.obj.get("params").and_then(Value::as_object);
    if let Some(family) = params
        .and_then(|p| p.get("margin_family"))
        .and_then(Value::as_str)
    {
        if !family.to_ascii_lowercase().starts_with("combined") {
            return Ok(Scope::NotCombinedMargin(format!(
                "{} (margin_family {family:?})",
                named_non_cm_head(implementation).unwrap_or("this head")
            )));
        }
    }
    if let Some(head) = named_non_cm_head(implementation) {
        return Ok(Scope::NotCombinedMargin(head.to_string()));
    }
    if let Some(p) = params {
        for k in ["m1", "m2", "m3"] {
            if let Some(Value::Array(a)) = p.get(k) {
                if let Some(i) = a
                    .iter()
                    .position(|v| crate::fixture::parse_number(v).is_err())
                {
                    return Err(FixtureError::new(
                        &raw.file,
                        format!("element {i}: a per-row margin must be a number"),
                    )
                    .in_case(&raw.name)
                    .in_field(&format!("params.{k}")));
                }
            }
        }
    }
    if kind == DumpKind::Pipeline
        && !raw.has("margin_logits")
        && !raw.has("d_margin_logits")
        && (raw.has("loss") || raw.has("d_cos"))
    {
        return Ok(Scope::LossOnly);
    }
    Ok(Scope::CombinedMargin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_names_are_whole_tokens() {
        assert_eq!(
            named_non_cm_head("fastreid.layers.any_softmax.CircleSoftmax@1.4.0"),
            Some("Circle loss (CircleSoftmax)")
        );
        assert_eq!(
            named_non_cm_head("opensphere.SphereFace2@1"),
            Some("SphereFace2")
        );
        assert_eq!(named_non_cm_head("opensphere.SphereFace@1"), None);
        assert_eq!(
            named_non_cm_head("catalyst.contrib.layers.ArcFace@22.4"),
            None
        );
    }
}
