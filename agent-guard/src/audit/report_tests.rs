use std::time::Duration;

use serde_json::json;

use super::{
    AuditError, Report,
    lifecycle::EndKind,
    test_events::{at, base, event, task_life, with},
};
use crate::grant::{Grant, RuleAction};

fn report(events: &[serde_json::Value]) -> Report {
    Report::build_at(7, events, base() + Duration::from_secs(3600)).expect("report")
}

#[test]
fn report_tells_a_task_from_its_events() {
    let report = report(&task_life());
    assert_eq!((report.agent.as_str(), report.intent.as_str()), ("support-bot", "triage ticket 4412"));
    let steps: Vec<(&str, &str)> = report.steps.iter().map(|s| (s.time.as_str(), s.step.as_str())).collect();
    assert_eq!(steps, [(at(10).as_str(), "read the ticket"), (at(50).as_str(), "draft a reply")]);

    let grant = &report.grant;
    assert_eq!(grant.name, "triage");
    assert_eq!((grant.mode.as_deref(), grant.ttl.as_deref()), (Some("enforce"), Some("15m")));
    assert_eq!(grant.expires.as_deref(), Some("2026-03-01T10:15:00.000Z"));
    assert_eq!(grant.issued_at.as_deref(), Some(at(0).as_str()));
    assert_eq!(grant.issued_by.as_ref().and_then(|a| a.user.as_deref()), Some("alice"));

    assert_eq!(report.approvals.len(), 1);
    let approval = &report.approvals[0];
    assert_eq!((approval.id, approval.outcome.as_str()), (Some(5), "granted"));
    assert_eq!(approval.by.as_ref().map(|a| a.uid), Some(0));
    assert_eq!(
        (approval.requested.as_deref(), approval.decided.as_deref()),
        (Some(at(40).as_str()), Some(at(45).as_str()))
    );

    let dirs: Vec<(&str, u64)> = report.touched.directories.iter().map(|t| (t.target.as_str(), t.count)).collect();
    assert_eq!(dirs, [("/etc", 1), ("/srv/tickets/<script>alert(1)<", 1)]);
    let dest = &report.touched.destinations;
    assert_eq!(dest.len(), 1);
    assert_eq!(
        (dest[0].target.as_str(), dest[0].count, dest[0].decisions.get("flagged")),
        ("127.0.0.1:8443", 3, Some(&3))
    );

    let findings: Vec<(&str, &str, u64)> =
        report.findings.iter().map(|f| (f.decision.as_str(), f.rule.as_str(), f.count)).collect();
    assert_eq!(
        findings,
        [("denied", "files.read /etc/shadow (deny)", 1), ("flagged", "network.connect[2] 127.0.0.1/32:8443 (flag)", 3)]
    );

    assert!(report.usage.recorded);
    assert_eq!(report.usage.unused.len(), 5);
    let ended = report.ended.as_ref().expect("ended");
    assert_eq!((ended.how, ended.time.as_str()), (EndKind::Closed, at(60).as_str()));
}

#[test]
fn the_narrowed_grant_drops_unused_allow_rules_only_and_parses() {
    let report = report(&task_life());
    let lp = &report.least_privilege;
    assert_eq!(
        lp.removed,
        ["files.read /usr/**", "exec /usr/bin/curl", "network.connect[1] [::1]/128:8080"],
        "write rules stay: file-tree changes use them without being counted"
    );
    let yaml = lp.grant_yaml.as_deref().expect("a suggestion");
    let grant = Grant::parse("narrowed.yaml", yaml).expect("the suggestion is a valid grant");
    assert_eq!(grant.metadata.name, "triage-narrowed");
    let spec = &grant.spec;
    assert_eq!(spec.ttl, Some(Duration::from_mins(15)));
    let read: Vec<String> = spec.files.read.iter().map(|r| r.target.to_string()).collect();
    assert_eq!(read, ["/srv/tickets/4412/**", "/etc/shadow"], "the unused deny rule stays");
    assert_eq!(spec.files.read[1].action, RuleAction::Deny);
    assert_eq!(spec.files.write.len(), 1);
    let exec: Vec<String> = spec.exec.iter().map(|r| r.target.to_string()).collect();
    assert_eq!(exec, ["/usr/bin/python3"], "a rule in neither list is kept");
    let net: Vec<(String, RuleAction)> =
        spec.network.connect.iter().map(|r| (r.target.to_string(), r.action)).collect();
    assert_eq!(net, [("127.0.0.1/32:8080".into(), RuleAction::Allow), ("127.0.0.1/32:8443".into(), RuleAction::Flag)]);
}

#[test]
fn renderers_carry_the_key_facts_and_escape_event_text() {
    let report = report(&task_life());
    let md = report.to_markdown();
    for fact in [
        "support-bot",
        "triage ticket 4412",
        "read the ticket",
        "draft a reply",
        "files.read /etc/shadow (deny)",
        "alice",
        "granted",
        "closed at",
        "127.0.0.1:8443",
        "triage-narrowed",
        "exec /usr/bin/curl",
    ] {
        assert!(md.contains(fact), "markdown lacks {fact:?}:\n{md}");
    }
    assert!(!md.contains("<script>"), "raw HTML in markdown:\n{md}");
    let html = report.to_html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for fact in [
        "support-bot",
        "triage ticket 4412",
        "draft a reply",
        "files.read /etc/shadow (deny)",
        "alice",
        "closed at",
        "127.0.0.1:8443",
        "triage-narrowed",
        "&lt;script&gt;",
    ] {
        assert!(html.contains(fact), "html lacks {fact:?}");
    }
    assert!(!html.contains("<script>"), "unescaped script in html");
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["schema"], "agent-guard.report/v1");
    assert_eq!(json["ended"]["how"], "closed");
}

#[test]
fn without_usage_the_report_claims_nothing_unused() {
    let mut events = task_life();
    if let Some(close) = events.last_mut().and_then(|e| e.as_object_mut()) {
        close.remove("usage");
    }
    let report = report(&events);
    assert!(!report.usage.recorded);
    assert!(report.least_privilege.grant_yaml.is_none());
    assert!(report.to_markdown().contains("Usage was not recorded"));
    assert!(report.to_html().contains("Usage was not recorded"));
}

#[test]
fn a_revoked_task_ended_at_the_revocation_by_its_actor() {
    let mut events = task_life();
    events.insert(
        7,
        with(
            event("rv", "grant.revoke", 55, Some(7)),
            json!({"actor": {"pid": 9, "uid": 0}, "reason": "revoked by root: the task's processes are allowed nothing from now on"}),
        ),
    );
    let report = report(&events);
    let ended = report.ended.as_ref().expect("ended");
    assert_eq!((ended.how, ended.time.as_str()), (EndKind::Revoked, at(55).as_str()));
    assert_eq!(ended.actor.as_ref().map(|a| a.pid), Some(9));
    assert_eq!(report.closed.as_deref(), Some(at(60).as_str()));
    assert!(report.to_markdown().contains("revoked at"));
}

#[test]
fn an_unknown_task_is_an_error() {
    let err = Report::build(99, &task_life()).expect_err("no task 99");
    assert!(matches!(err, AuditError::UnknownTask { task: 99 }));
}

#[test]
fn no_narrower_grant_is_suggested_when_kernel_records_were_lost() {
    let mut events = task_life();
    let close = events.last_mut().unwrap();
    close["usage"]["complete"] = serde_json::json!(false);
    let report = report(&events);
    assert!(report.least_privilege.grant_yaml.is_none());
    assert!(report.least_privilege.note.contains("incomplete"), "{}", report.least_privilege.note);
}
