//! What a grant says of a DNS question, and whether a refused name looks like data smuggled out
//! in its labels. Pure: the resolver (serve.rs) acts on the answer.

use crate::grant::{GrantSpec, RuleAction};

/// The grant's answer to a question for one name.
#[derive(Debug, PartialEq, Eq)]
pub struct NameJudgement {
    /// The most restrictive matching name rule's action (deny > flag > allow); None: no name
    /// rule matches.
    pub action: Option<RuleAction>,
    /// Index in `network.connect` of the rule that decided.
    pub rule: Option<usize>,
    /// The allow and flag name rules matching the name (indexes): what its addresses are
    /// allowed for.
    pub allowing: Vec<usize>,
}

impl NameJudgement {
    /// Whether the question is forwarded.
    pub fn forwarded(&self) -> bool {
        matches!(self.action, Some(RuleAction::Allow | RuleAction::Flag))
    }
}

/// Judges a question for `name` (any case, trailing dot or not) against the name rules of `spec`.
pub fn judge_name(spec: &GrantSpec, name: &str) -> NameJudgement {
    let matching: Vec<(usize, RuleAction)> = spec
        .network
        .connect
        .iter()
        .enumerate()
        .filter(|(_, r)| r.target.name().is_some_and(|n| n.matches(name)))
        .map(|(i, r)| (i, r.action))
        .collect();
    // max_by_key keeps the last of equals: reverse so the first wins, as for addresses.
    let decided = matching.iter().rev().max_by_key(|(_, action)| *action).copied();
    NameJudgement {
        action: decided.map(|(_, a)| a),
        rule: decided.map(|(i, _)| i),
        allowing: matching
            .iter()
            .filter(|(_, a)| matches!(a, RuleAction::Allow | RuleAction::Flag))
            .map(|(i, _)| *i)
            .collect(),
    }
}

/// Whether a refused `name` looks like a carrier of data: a label of 40 or more characters
/// (hostnames rarely pass 20), a name of more than 120, or a label of 16 or more that is an
/// encoding rather than words: hex (digits and a-f, both present), or characters close to
/// random (Shannon entropy of at least 3.5 bits each: base32 and base64).
pub fn suspected_exfiltration(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    let hex = |label: &str| {
        label.bytes().all(|b| b.is_ascii_hexdigit())
            && label.bytes().any(|b| b.is_ascii_digit())
            && label.bytes().any(|b| b.is_ascii_alphabetic())
    };
    name.len() > 120
        || name
            .split('.')
            .any(|label| label.len() >= 40 || (label.len() >= 16 && (hex(label) || entropy(label) >= 3.5)))
}

/// Shannon entropy of `text`'s bytes, bits per byte.
fn entropy(text: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in text.bytes() {
        counts[usize::from(b.to_ascii_lowercase())] += 1;
    }
    let n = text.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / n).map(|p| -p * p.log2()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(connect: &str) -> GrantSpec {
        let text = format!(
            "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {{name: t}}\nspec:\n  mode: enforce\n  ttl: 5m\n  network:\n    connect: {connect}\n"
        );
        crate::grant::Grant::parse("t.yaml", &text).unwrap().spec
    }

    #[test]
    fn exact_and_suffix_rules_decide_the_names_they_cover() {
        let s = spec(
            r#"["api.example.com:443", "*.cdn.example.com:80-90/tcp", {to: "*.bad.example.com:443", action: deny}, {to: "10.0.0.0/8:443", action: flag}]"#,
        );
        let j = judge_name(&s, "API.Example.com.");
        assert_eq!((j.action, j.rule, j.allowing.clone()), (Some(RuleAction::Allow), Some(0), vec![0]));
        assert!(j.forwarded());
        // The suffix's sub-names, not the suffix itself nor a sibling that merely ends alike.
        assert_eq!(judge_name(&s, "a.b.cdn.example.com").allowing, vec![1]);
        assert_eq!(judge_name(&s, "cdn.example.com").action, None);
        assert_eq!(judge_name(&s, "evilcdn.example.com").action, None);
        // A deny carves its names out, whatever else allows.
        let s2 = spec(r#"["*.example.com:443", {to: "*.bad.example.com:443", action: deny}]"#);
        let j = judge_name(&s2, "x.bad.example.com");
        assert_eq!((j.action, j.rule), (Some(RuleAction::Deny), Some(1)));
        assert!(!j.forwarded());
        // Address rules are not name rules.
        assert_eq!(judge_name(&s, "10.0.0.1").action, None);
    }

    #[test]
    fn data_in_labels_is_suspected_and_ordinary_names_are_not() {
        for ordinary in ["www.example.com", "api.github.com", "files.pythonhosted.org", "us-east-1.amazonaws.com"] {
            assert!(!suspected_exfiltration(ordinary), "{ordinary}");
        }
        for carrier in [
            "4a6f686e20446f65206973203432.evil.example",
            "mzxw6ytboi2dsnzqgm3tqojzgaydmnrx.evil.example",
            &format!("{}.evil.example", "a".repeat(45)),
            &format!("{}.evil.example", ["abc"; 40].join(".")),
        ] {
            assert!(suspected_exfiltration(carrier), "{carrier}");
        }
    }
}
