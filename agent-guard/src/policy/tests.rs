use std::collections::BTreeMap;

use super::*;
use crate::grant::{PathPattern, RuleAction, excess};

const PROFILE: &str = r#"
apiVersion: agent-guard.dev/v1
kind: AgentProfile
metadata: {name: ticket-bot}
spec:
  maxTtl: 1h
  templates: [triage]
  baseGrant:
    files: {read: ["/usr/**"]}
    exec: ["/usr/bin/*"]
"#;

const TEMPLATE: &str = r#"
apiVersion: agent-guard.dev/v1
kind: GrantTemplate
metadata: {name: triage}
spec:
  variables: {workspace: path, ticket: name}
  grant:
    ttl: 2h
    files:
      read: [{workspace}/**, "/tmp/agent-{task_id}/**"]
      write: ["{workspace}/out/{ticket}/**", {path: "{workspace}/secret/**", action: deny}]
    network:
      connect: ["127.0.0.1:8080", {to: "10.0.0.0/8:443", action: flag}]
"#;

fn set() -> PolicySet {
    let docs = vec![
        ("p.yaml".into(), parse("p.yaml", PROFILE).unwrap()),
        ("t.yaml".into(), parse("t.yaml", TEMPLATE).unwrap()),
    ];
    PolicySet::from_documents(docs).unwrap()
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn a_template_fills_in_its_variables_and_the_profile_adds_its_base_grant() {
    let builtins = [("task_id", "7".to_string()), ("agent", "ticket-bot".to_string())];
    let tg = set()
        .task_grant("ticket-bot", Some("triage"), &vars(&[("workspace", "/srv/w"), ("ticket", "4412")]), &builtins)
        .unwrap();
    let files = &tg.grant.spec.files;
    assert_eq!(files.read[0].target, PathPattern::Subtree("/srv/w".into()));
    assert_eq!(files.read[1].target, PathPattern::Subtree("/tmp/agent-7".into()));
    assert_eq!(files.read[2].target, PathPattern::Subtree("/usr".into()), "base grant appended");
    assert_eq!(files.write[0].target, PathPattern::Subtree("/srv/w/out/4412".into()));
    assert_eq!(files.write[1].action, RuleAction::Deny);
    assert_eq!(tg.grant.spec.network.connect[1].action, RuleAction::Flag);
    // The template's 2h is capped by the profile's maxTtl.
    assert_eq!(tg.grant.spec.ttl, Some(std::time::Duration::from_secs(3600)));
    assert_eq!(tg.max_ttl, std::time::Duration::from_secs(3600));
}

#[test]
fn template_variables_are_checked() {
    let set = set();
    let fill = |v: &[(&str, &str)]| set.task_grant("ticket-bot", Some("triage"), &vars(v), &[]).unwrap_err();
    assert!(fill(&[("workspace", "/srv/w")]).contains("needs --var ticket=VALUE"));
    assert!(fill(&[("workspace", "/srv/../etc"), ("ticket", "1")]).contains("absolute, normalised path"));
    assert!(fill(&[("workspace", "/srv/w\n  - /"), ("ticket", "1")]).contains("absolute, normalised path"));
    assert!(fill(&[("workspace", "/srv/*"), ("ticket", "1")]).contains("no wildcards"));
    // In an unquoted flow sequence a comma would make two rules of one value.
    assert!(fill(&[("workspace", "/srv/a,/etc"), ("ticket", "1")]).contains("absolute, normalised path"));
    assert!(fill(&[("workspace", "/srv/w"), ("ticket", "a/b")]).contains("letters, digits"));
    assert!(fill(&[("workspace", "/w"), ("ticket", "1"), ("extra", "x")]).contains("has no variable \"extra\""));
    let other = set.task_grant("ticket-bot", Some("other"), &BTreeMap::new(), &[]).unwrap_err();
    assert!(other.contains("may not use template \"other\""), "{other}");
    let nobody = set.task_grant("nobody", None, &BTreeMap::new(), &[]).unwrap_err();
    assert!(nobody.contains("no AgentProfile \"nobody\""), "{nobody}");
}

#[test]
fn undeclared_variables_and_variables_outside_templates_are_refused_with_their_position() {
    let undeclared = TEMPLATE.replace("{ticket}/**", "{tikcet}/**");
    let err = parse("t.yaml", &undeclared).unwrap_err().to_string();
    assert!(err.contains("line 11, column") && err.contains("variable {tikcet} is not declared"), "{err}");
    let grant = "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {name: g}\nspec:\n  files: {read: [\"{workspace}/**\"]}\n";
    let err = parse("g.yaml", grant).unwrap_err().to_string();
    assert!(err.contains("line 5, column 19") && err.contains("only allowed in a GrantTemplate"), "{err}");
}

#[test]
fn profiles_must_name_existing_templates_and_names_are_unique() {
    let docs = vec![("p.yaml".into(), parse("p.yaml", PROFILE).unwrap())];
    let errors = PolicySet::from_documents(docs).unwrap_err();
    assert!(errors[0].contains("names \"triage\", which no GrantTemplate defines"), "{errors:?}");
    let docs = vec![
        ("t.yaml".into(), parse("t.yaml", TEMPLATE).unwrap()),
        ("u.yaml".into(), parse("u.yaml", TEMPLATE).unwrap()),
    ];
    let errors = PolicySet::from_documents(docs).unwrap_err();
    assert!(errors[0].contains("GrantTemplate \"triage\" is already defined in t.yaml"), "{errors:?}");
    let bad = PROFILE.replace("maxTtl: 1h", "maxTtl: 1h\n  maxTTL: 2h");
    assert!(parse("p.yaml", &bad).unwrap_err().to_string().contains("unknown field `maxTTL`"));
}

#[test]
fn contradictory_rules_are_refused() {
    let text = TEMPLATE.replace(
        "{path: \"{workspace}/secret/**\", action: deny}",
        "{path: \"{workspace}/out/{ticket}/**\", action: deny}",
    );
    let err = parse("t.yaml", &text).unwrap_err().to_string();
    assert!(err.contains("is listed as both allow and deny"), "{err}");
}

fn grant_spec(yaml: &str) -> crate::grant::GrantSpec {
    let text = format!("apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {{name: g}}\nspec:\n{yaml}");
    crate::grant::Grant::parse("g.yaml", &text).unwrap().spec
}

#[test]
fn a_sub_grant_must_lie_within_its_parent() {
    let parent = grant_spec(
        "  files: {read: [\"/srv/**\", \"/etc/hosts\", \"/var/*\"], write: [\"/srv/out/**\"]}\n  exec: [\"/usr/bin/**\"]\n  network: {connect: [\"10.0.0.0/8:400-500/tcp\"]}\n",
    );
    let ok = grant_spec(
        "  files: {read: [\"/srv/a/**\", \"/srv/b\", \"/etc/hosts\", \"/var/log\", {path: \"/etc/shadow\", action: deny}]}\n  network: {connect: [\"10.1.0.0/16:443/tcp\"]}\n",
    );
    assert!(excess(&ok, &parent).is_empty(), "{:?}", excess(&ok, &parent));
    let broad = grant_spec(
        "  mode: audit\n  files: {read: [\"/**\", \"/var/**\", \"/etc/hosts/x\"], write: [\"/srv/**\"]}\n  exec: [\"/bin/sh\"]\n  network: {connect: [\"10.0.0.0/8:443\", \"10.0.0.0/8:80/tcp\", \"0.0.0.0/0:443/tcp\"]}\n",
    );
    let found = excess(&broad, &parent);
    let expected = [
        "mode audit",
        "files.read /** ",
        "files.read /var/** ",
        "files.read /etc/hosts/x ",
        "files.write /srv/** ",
        "exec /bin/sh ",
        "network.connect 10.0.0.0/8:443 ",
        "network.connect 10.0.0.0/8:80/tcp ",
        "network.connect 0.0.0.0/0:443/tcp ",
    ];
    assert_eq!(found.len(), expected.len(), "{found:?}");
    for (line, want) in found.iter().zip(expected) {
        assert!(line.starts_with(want), "{line} should start with {want}");
    }
}

#[test]
fn a_sub_task_inherits_its_parents_restrictions() {
    use agent_guard_common::path::{ACCESS_READ, Decision};
    let parent = grant_spec(
        "  files: {read: [\"/srv/**\", {path: \"/srv/secret/**\", action: deny}, {path: \"/srv/audit/**\", action: flag}]}\n",
    );
    let child = grant_spec("  files: {read: [\"/srv/**\"]}\n");
    let merged = crate::grant::with_restrictions(&child, &parent);
    let g = crate::grant::Grant {
        spec: merged,
        ..crate::grant::Grant::parse(
            "g",
            "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {name: g}\nspec: {}\n",
        )
        .unwrap()
    };
    assert_eq!(g.path_decision("/srv/secret/key", ACCESS_READ).0, Decision::Deny);
    assert_eq!(g.path_decision("/srv/audit/log", ACCESS_READ).0, Decision::Flag);
    assert_eq!(g.path_decision("/srv/x", ACCESS_READ).0, Decision::Allow);
}
