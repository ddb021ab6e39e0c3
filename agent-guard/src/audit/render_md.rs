//! The report as Markdown. Event-derived text is escaped so that it reads as text: a path or
//! intent cannot add table cells, links or raw HTML to a rendered report.

use std::fmt::Write as _;

use super::report::{Report, Touch};

impl Report {
    #[expect(clippy::too_many_lines, reason = "the report's sections in reading order: one page, one function")]
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let t = text;
        let _ = writeln!(out, "# Task {} — evidence report\n", self.task);
        let _ = writeln!(out, "- **Agent:** {}", t(&self.agent));
        let _ = writeln!(out, "- **Declared intent:** {}", t(&self.intent));
        if let Some(parent) = self.parent {
            let _ = writeln!(out, "- **Sub-task of:** task {parent}");
        }
        if let Some(host) = &self.host {
            let _ = writeln!(out, "- **Host:** {}", t(host));
        }
        let _ = writeln!(out, "- **Access ended:** {}", t(&self.ending_line()));
        let _ = writeln!(out, "- **Events:** {}", self.events);

        let _ = writeln!(out, "\n## Steps declared\n");
        if self.steps.is_empty() {
            let _ = writeln!(out, "None.");
        }
        for step in &self.steps {
            let _ = writeln!(out, "1. {} — {}", t(&step.time), t(&step.step));
        }

        let g = &self.grant;
        let _ = writeln!(out, "\n## Grant as issued\n");
        let _ = writeln!(out, "- **Name:** {}", t(&g.name));
        let _ = writeln!(out, "- **Mode:** {}", t(g.mode.as_deref().unwrap_or("unknown")));
        let _ = writeln!(out, "- **TTL:** {}", t(g.ttl.as_deref().unwrap_or("unknown")));
        let _ = writeln!(out, "- **Expires:** {}", t(g.expires.as_deref().unwrap_or("unknown")));
        let _ = writeln!(out, "- **Issued:** {}", t(g.issued_at.as_deref().unwrap_or("not in the store")));
        let by = g.issued_by.as_ref().map_or("not recorded".into(), ToString::to_string);
        let _ = writeln!(out, "- **Issued by:** {}", t(&by));
        if let Some(spec) = &g.spec {
            let yaml = serde_yaml_ng::to_string(spec).unwrap_or_else(|_| spec.to_string());
            let _ = writeln!(out, "\n{}", fenced("yaml", &yaml));
        }
        for change in &self.extensions {
            let by = change.actor.as_ref().map_or("unknown".into(), ToString::to_string);
            let reason = change.reason.as_deref().unwrap_or("");
            let _ = writeln!(out, "- **Extended** {} by {}: {}", t(&change.time), t(&by), t(reason));
        }

        let _ = writeln!(out, "\n## Approvals\n");
        if self.approvals.is_empty() {
            let _ = writeln!(out, "None requested.");
        } else {
            let _ = writeln!(
                out,
                "| id | requested | action | asked by | justification | for | outcome | by | decided | ended | reason |\n|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for a in &self.approvals {
                let by = a.approver_line();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    a.id.map_or("-".into(), |id| id.to_string()),
                    t(a.requested.as_deref().unwrap_or("-")),
                    t(&a.object),
                    t(a.asked_by.as_deref().unwrap_or("-")),
                    t(a.justification.as_deref().unwrap_or("-")),
                    t(a.duration.as_deref().unwrap_or("-")),
                    t(&a.outcome),
                    t(&by),
                    t(a.decided.as_deref().unwrap_or("-")),
                    t(a.narrowed.as_deref().unwrap_or("-")),
                    t(a.reason.as_deref().unwrap_or("")),
                );
            }
        }

        let _ = writeln!(out, "\n## What was touched\n");
        let _ = writeln!(
            out,
            "Out-of-scope actions as reported, and, within the grant, the distinct files and destinations first used (from the task's usage summary).\n"
        );
        touch_table(&mut out, "directory", &self.touched.directories);
        touch_table(&mut out, "destination", &self.touched.destinations);

        let _ = writeln!(out, "\n## Denied or flagged\n");
        if self.findings.is_empty() {
            let _ = writeln!(out, "Nothing.");
        } else {
            let _ = writeln!(out, "| decision | action | rule | count | first | last |\n|---|---|---|---|---|---|");
            for f in &self.findings {
                let _ = writeln!(
                    out,
                    "| {} | {} {} | {} | {} | {} | {} |",
                    t(&f.decision),
                    t(&f.kind),
                    t(&f.object),
                    t(&f.rule),
                    f.count,
                    t(&f.first),
                    t(&f.last)
                );
            }
        }

        let _ = writeln!(out, "\n## Permissions never used\n");
        if !self.usage.recorded {
            let _ =
                writeln!(out, "Usage was not recorded for this task: nothing can be said about unused permissions.");
        } else if self.usage.unused.is_empty() {
            let _ = writeln!(out, "Every rule of the grant was used.");
        } else {
            for rule in &self.usage.unused {
                let _ = writeln!(out, "- {}", t(rule));
            }
        }
        let _ = writeln!(out, "\n## Least-privilege suggestion\n\n{}", t(&self.least_privilege.note));
        if let Some(yaml) = &self.least_privilege.grant_yaml {
            let _ = writeln!(out, "\n{}", fenced("yaml", yaml));
        }
        out
    }

    /// "closed at T: its last process exited", for both renderers (unescaped).
    pub(super) fn ending_line(&self) -> String {
        match &self.ended {
            Some(end) => {
                let by = end.actor.as_ref().map(|a| format!(" by {a}")).unwrap_or_default();
                let reason = end.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                format!("{} at {}{by}{reason}", end.how.name(), end.time)
            }
            None => "not ended (the task is open, or its end is not in the store)".into(),
        }
    }
}

fn touch_table(out: &mut String, what: &str, touches: &[Touch]) {
    if touches.is_empty() {
        let _ = writeln!(out, "No {what} reported.\n");
        return;
    }
    let _ = writeln!(out, "| {what} | count | decisions | kinds |\n|---|---|---|---|");
    for touch in touches {
        let decisions: Vec<String> = touch.decisions.iter().map(|(d, n)| format!("{d} {n}")).collect();
        let kinds: Vec<&str> = touch.kinds.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            text(&touch.target),
            touch.count,
            text(&decisions.join(", ")),
            text(&kinds.join(", "))
        );
    }
    out.push('\n');
}

/// Escapes Markdown and HTML syntax in one line of text, and shows controls, bidi overrides and
/// invisible characters as `\u{..}` (the report is read in terminals too).
fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if crate::text::is_deceptive(c) => out.extend(c.escape_unicode()),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A fenced code block whose fence is longer than any backtick run in `body`.
/// Deceptive characters in `body` are shown as `\u{..}` (the JSON report keeps the exact text).
fn fenced(lang: &str, body: &str) -> String {
    let body: Vec<_> = body.lines().map(crate::text::printable).collect();
    let body = body.join("\n");
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{lang}\n{}\n{fence}", body.trim_end())
}
