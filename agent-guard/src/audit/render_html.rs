//! The report as a standalone HTML page (inline CSS, no scripts). Every event-derived string
//! goes through html-escape: paths, intents and reasons come from the agent's side.

use std::fmt::Write as _;

use html_escape::encode_text as esc;

use super::report::{Report, Touch};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}\
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;\
vertical-align:top}th{background:#f3f3f3}pre{background:#f6f6f6;padding:.75rem;overflow:auto}\
.denied{color:#a40000;font-weight:600}.flagged{color:#8a5a00;font-weight:600}dt{font-weight:600}";

impl Report {
    #[expect(clippy::too_many_lines, reason = "the report's sections in reading order: one page, one function")]
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Task {} evidence report</title><style>{STYLE}</style></head><body>\n",
            self.task
        );
        let _ = writeln!(out, "<h1>Task {} — evidence report</h1>\n<dl>", self.task);
        dl(&mut out, "Agent", &self.agent);
        dl(&mut out, "Declared intent", &self.intent);
        if let Some(parent) = self.parent {
            dl(&mut out, "Sub-task of", &format!("task {parent}"));
        }
        if let Some(host) = &self.host {
            dl(&mut out, "Host", host);
        }
        dl(&mut out, "Access ended", &self.ending_line());
        dl(&mut out, "Events", &self.events.to_string());
        out.push_str("</dl>\n<h2>Steps declared</h2>\n");
        if self.steps.is_empty() {
            out.push_str("<p>None.</p>\n");
        } else {
            out.push_str("<ol>\n");
            for step in &self.steps {
                let _ = writeln!(out, "<li>{} — {}</li>", esc(&step.time), esc(&step.step));
            }
            out.push_str("</ol>\n");
        }

        let g = &self.grant;
        out.push_str("<h2>Grant as issued</h2>\n<dl>\n");
        dl(&mut out, "Name", &g.name);
        dl(&mut out, "Mode", g.mode.as_deref().unwrap_or("unknown"));
        dl(&mut out, "TTL", g.ttl.as_deref().unwrap_or("unknown"));
        dl(&mut out, "Expires", g.expires.as_deref().unwrap_or("unknown"));
        dl(&mut out, "Issued", g.issued_at.as_deref().unwrap_or("not in the store"));
        dl(&mut out, "Issued by", &g.issued_by.as_ref().map_or("not recorded".into(), ToString::to_string));
        for change in &self.extensions {
            let by = change.actor.as_ref().map_or("unknown".into(), ToString::to_string);
            let what = format!("{} by {}: {}", change.time, by, change.reason.as_deref().unwrap_or(""));
            dl(&mut out, "Extended", &what);
        }
        out.push_str("</dl>\n");
        if let Some(spec) = &g.spec {
            let yaml = serde_yaml_ng::to_string(spec).unwrap_or_else(|_| spec.to_string());
            let _ = writeln!(out, "<pre>{}</pre>", esc(&yaml));
        }

        out.push_str("<h2>Approvals</h2>\n");
        if self.approvals.is_empty() {
            out.push_str("<p>None requested.</p>\n");
        } else {
            head(
                &mut out,
                &[
                    "id",
                    "requested",
                    "action",
                    "asked by",
                    "justification",
                    "for",
                    "outcome",
                    "by",
                    "decided",
                    "ended",
                    "reason",
                ],
            );
            for a in &self.approvals {
                row(
                    &mut out,
                    &[
                        &a.id.map_or("-".into(), |id| id.to_string()),
                        a.requested.as_deref().unwrap_or("-"),
                        &a.object,
                        a.asked_by.as_deref().unwrap_or("-"),
                        a.justification.as_deref().unwrap_or("-"),
                        a.duration.as_deref().unwrap_or("-"),
                        &a.outcome,
                        &a.approver_line(),
                        a.decided.as_deref().unwrap_or("-"),
                        a.narrowed.as_deref().unwrap_or("-"),
                        a.reason.as_deref().unwrap_or(""),
                    ],
                );
            }
            out.push_str("</table>\n");
        }

        out.push_str(
            "<h2>What was touched</h2>\n<p>Out-of-scope actions as reported, and, within the grant, the distinct files and destinations first used (from the task's usage summary).</p>\n",
        );
        touch_table(&mut out, "directory", &self.touched.directories);
        touch_table(&mut out, "destination", &self.touched.destinations);

        out.push_str("<h2>Denied or flagged</h2>\n");
        if self.findings.is_empty() {
            out.push_str("<p>Nothing.</p>\n");
        } else {
            head(&mut out, &["decision", "action", "rule", "count", "first", "last"]);
            for f in &self.findings {
                let class = if f.decision == "denied" { "denied" } else { "flagged" };
                let _ = writeln!(
                    out,
                    "<tr><td class=\"{class}\">{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&f.decision),
                    esc(&f.kind),
                    esc(&f.object),
                    esc(&f.rule),
                    f.count,
                    esc(&f.first),
                    esc(&f.last)
                );
            }
            out.push_str("</table>\n");
        }

        out.push_str("<h2>Permissions never used</h2>\n");
        if !self.usage.recorded {
            out.push_str(
                "<p>Usage was not recorded for this task: nothing can be said about unused permissions.</p>\n",
            );
        } else if self.usage.unused.is_empty() {
            out.push_str("<p>Every rule of the grant was used.</p>\n");
        } else {
            out.push_str("<ul>\n");
            for rule in &self.usage.unused {
                let _ = writeln!(out, "<li><code>{}</code></li>", esc(rule));
            }
            out.push_str("</ul>\n");
        }
        let _ = writeln!(out, "<h2>Least-privilege suggestion</h2>\n<p>{}</p>", esc(&self.least_privilege.note));
        if let Some(yaml) = &self.least_privilege.grant_yaml {
            let _ = writeln!(out, "<pre>{}</pre>", esc(yaml));
        }
        out.push_str("</body></html>\n");
        out
    }
}

fn dl(out: &mut String, term: &str, value: &str) {
    let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", esc(term), esc(value));
}

fn head(out: &mut String, columns: &[&str]) {
    out.push_str("<table><tr>");
    for column in columns {
        let _ = write!(out, "<th>{}</th>", esc(column));
    }
    out.push_str("</tr>\n");
}

fn row(out: &mut String, cells: &[&str]) {
    out.push_str("<tr>");
    for cell in cells {
        let _ = write!(out, "<td>{}</td>", esc(cell));
    }
    out.push_str("</tr>\n");
}

fn touch_table(out: &mut String, what: &str, touches: &[Touch]) {
    if touches.is_empty() {
        let _ = writeln!(out, "<p>No {what} reported.</p>");
        return;
    }
    head(out, &[what, "count", "decisions", "kinds"]);
    for touch in touches {
        let decisions: Vec<String> = touch.decisions.iter().map(|(d, n)| format!("{d} {n}")).collect();
        let kinds: Vec<&str> = touch.kinds.iter().map(String::as_str).collect();
        row(out, &[&touch.target, &touch.count.to_string(), &decisions.join(", "), &kinds.join(", ")]);
    }
    out.push_str("</table>\n");
}
