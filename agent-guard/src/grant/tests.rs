use std::collections::HashMap;

use agent_guard_common::{
    net::{PROTO_TCP, PROTO_UDP},
    path::{ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, FNV_OFFSET, PathRule, fnv1a_step},
};

use super::*;
use crate::grant::{
    compile::CompileError,
    net_rule::{mapped, prefix_contains},
};

const EXAMPLE: &str = r#"
apiVersion: agent-guard.dev/v1
kind: Grant
metadata: {name: triage-tickets}
spec:
  mode: enforce
  ttl: 15m
  files: {read: ["/srv/tickets/**", "/usr/**"], write: ["/tmp/work/**", "/var/log/*"]}
  exec: ["/usr/bin/python3", "/usr/bin/curl"]
  network: {connect: ["127.0.0.1/32:8080", "10.0.0.0/8:443", "[::1]/128:8080-8090", "10.1.0.0/16:80/udp"]}
"#;

fn example() -> Grant {
    Grant::parse("example.yaml", EXAMPLE).expect("example grant parses")
}

#[test]
fn parses_the_documented_shape() {
    let g = example();
    assert_eq!(g.metadata.name, "triage-tickets");
    assert_eq!(g.spec.mode, Mode::Enforce);
    assert_eq!(g.spec.ttl, Some(std::time::Duration::from_mins(15)));
    assert_eq!(
        g.spec.files.read[0],
        FileRule { target: PathPattern::Subtree("/srv/tickets".into()), action: RuleAction::Allow }
    );
    assert_eq!(g.spec.network.connect.len(), 4);
}

fn error_of(text: &str) -> String {
    Grant::parse("bad.yaml", text).expect_err("grant must be refused").to_string()
}

#[test]
fn unknown_field_is_refused_with_its_line() {
    let text = EXAMPLE.replace("  exec:", "  exce:");
    let err = error_of(&text);
    assert!(err.starts_with("policy bad.yaml: line 9, column 3:"), "{err}");
    assert!(err.contains("unknown field `exce`"), "{err}");
}

#[test]
fn bad_cidr_names_file_line_and_problem() {
    let text = EXAMPLE.replace("10.0.0.0/8:443", "10.0.0.1/8:443");
    let err = error_of(&text);
    assert!(err.contains("policy bad.yaml: line 10"), "{err}");
    assert!(err.contains("host bits are set; did you mean 10.0.0.0/8?"), "{err}");
}

#[test]
fn bad_values_are_refused() {
    for (from, to, expect) in [
        ("mode: enforce", "mode: block", "unknown variant `block`"),
        ("ttl: 15m", "ttl: soon", "invalid duration"),
        ("/srv/tickets/**", "srv/tickets", "absolute path"),
        ("/srv/tickets/**", "/srv/*/tickets", "wildcards are allowed only"),
        ("/srv/tickets/**", "/srv/../etc/**", "normalised"),
        (":8080-8090", ":8090-8080", "is empty"),
        ("127.0.0.1/32:8080", "::1/128:80", "brackets"),
        ("127.0.0.1/32:8080", "127.0.0.1/33:80", "prefix length"),
        ("agent-guard.dev/v1", "agent-guard.dev/v2", "unknown variant"),
        ("name: triage-tickets", "name: \"a b\"", "metadata.name"),
    ] {
        let err = error_of(&EXAMPLE.replace(from, to));
        assert!(err.contains(expect), "{from} -> {to}: {err}");
        assert!(err.contains("bad.yaml"), "{err}");
    }
}

#[test]
fn ttl_requests_never_exceed_the_grant() {
    let g = example();
    assert!(g.effective_ttl(Some(std::time::Duration::from_secs(3600))).is_err());
    assert_eq!(g.effective_ttl(Some(std::time::Duration::from_secs(60))).unwrap().as_secs(), 60);
    assert_eq!(g.effective_ttl(None).unwrap().as_secs(), 900);
}

#[test]
fn net_rules_parse_and_print_round_trip() {
    for text in ["127.0.0.1/32:8080", "10.0.0.0/8:443", "[::1]/128:8080-8090", "0.0.0.0/0:*", "10.0.0.0/8:53/udp"] {
        let rule: Destination = text.parse().unwrap();
        assert_eq!(rule.to_string(), text);
    }
    let bare: Destination = "127.0.0.1:80".parse().unwrap();
    assert_eq!(bare.to_string(), "127.0.0.1/32:80");
}

#[test]
fn name_rules_parse_print_and_refuse_what_is_not_a_name() {
    for text in ["api.github.com:443", "*.pythonhosted.org:443/tcp", "1password.com:443", "_dns.example.com:53/udp"] {
        let rule: Destination = text.parse().unwrap();
        assert_eq!(rule.to_string(), text);
        assert!(rule.mapped_prefix().is_none() && rule.name().is_some(), "{text}");
    }
    // Lowercased, trailing dot dropped.
    assert_eq!("API.Example.COM.:443".parse::<Destination>().unwrap().to_string(), "api.example.com:443");
    for (bad, why) in [
        ("com:443", "at least two labels"),
        ("*.com:443", "at least two labels"),
        ("a.*.example.com:443", "only start with"),
        ("-a.example.com:443", "not a DNS name"),
        ("a..example.com:443", "not a DNS name"),
        ("1.2.3.4.5:443", "not an IPv4 address"),
        ("api.example.com:99999", "not a port"),
    ] {
        let err = bad.parse::<Destination>().unwrap_err().to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
    // A name rule matches no address by itself, and compiles to nothing in the trie.
    let text = EXAMPLE.replace("connect: [", "connect: [\"api.example.com:443\", ");
    let g = Grant::parse("names.yaml", &text).unwrap();
    assert!(g.connect_rule(&crate::grant::mapped("93.184.216.34".parse().unwrap()), 443, PROTO_TCP).is_none());
    let plain = CompiledGrant::compile(&example()).unwrap();
    assert_eq!(CompiledGrant::compile(&g).unwrap().nets.len(), plain.nets.len());
}

#[test]
fn a_sub_grant_name_rule_must_lie_within_the_parents() {
    use crate::grant::excess;
    let with = |rules: &str| {
        let text = EXAMPLE.replace("connect: [", &format!("connect: [{rules}, "));
        Grant::parse("x.yaml", &text).unwrap().spec
    };
    let parent = with("\"*.example.com:443\"");
    assert!(excess(&with("\"api.example.com:443\""), &parent).is_empty());
    assert!(excess(&with("\"*.a.example.com:443\""), &parent).is_empty());
    for wider in ["\"example.com:443\"", "\"api.example.org:443\"", "\"api.example.com:80\""] {
        let child = with(wider);
        assert!(excess(&child, &parent).iter().any(|e| e.contains("network.connect")), "{wider}");
    }
}

/// A userspace copy of the kernel's `match_path` over compiled entries: the representation
/// must give the reference evaluator's answer for every normalised absolute path.
fn kernel_style_match(paths: &HashMap<u64, PathRule>, path: &str) -> u32 {
    let bytes = path.as_bytes();
    let (mut hash, mut allowed, mut children) = (FNV_OFFSET, 0, 0);
    for &c in bytes {
        hash = fnv1a_step(hash, c);
        if c == b'/' {
            match paths.get(&hash) {
                Some(r) => {
                    allowed |= r.subtree;
                    children = r.children;
                }
                None => children = 0,
            }
        }
    }
    if bytes.len() == 1 {
        return allowed;
    }
    allowed |= children;
    allowed |= paths.get(&hash).map_or(0, |r| r.exact);
    allowed |= paths.get(&fnv1a_step(hash, b'/')).map_or(0, |r| r.subtree);
    allowed
}

#[test]
fn compiled_paths_agree_with_the_reference_evaluator() {
    let text = EXAMPLE
        .replace("\"/usr/**\"]", "\"/usr/**\", \"/etc/hosts\", \"/**\"]")
        .replace("\"/var/log/*\"", "\"/var/log/*\", \"/srv/tickets/new/*\"");
    let g = Grant::parse("x.yaml", &text).unwrap();
    let compiled: HashMap<u64, PathRule> = CompiledGrant::compile(&g).unwrap().paths.into_iter().collect();
    for path in [
        "/",
        "/srv",
        "/srv/tickets",
        "/srv/tickets/4412",
        "/srv/tickets/a/b/c",
        "/srv/ticketsx",
        "/srv/tickets/new",
        "/srv/tickets/new/x",
        "/srv/tickets/new/x/y",
        "/usr/bin/python3",
        "/usr/bin/curl",
        "/usr/bin/wget",
        "/etc/hosts",
        "/etc/shadow",
        "/tmp/work",
        "/tmp/work/out.txt",
        "/tmp/workx",
        "/var/log",
        "/var/log/syslog",
        "/var/log/apt/history.log",
    ] {
        assert_eq!(kernel_style_match(&compiled, path), g.spec.path_access(path), "path {path}");
    }
    assert_eq!(g.spec.path_access("/usr/bin/python3"), ACCESS_READ | ACCESS_EXEC);
    assert_eq!(g.spec.path_access("/var/log/syslog"), ACCESS_READ | ACCESS_WRITE);
    assert_eq!(g.spec.path_access("/var/log/apt/history.log"), ACCESS_READ);
}

#[test]
fn compiled_nets_agree_with_the_reference_evaluator() {
    let g = example();
    let compiled = CompiledGrant::compile(&g).unwrap();
    let lookup = |dest: &[u8; 16], port: u16, proto: u8| {
        let best = compiled
            .nets
            .iter()
            .filter(|(len, net, _)| prefix_contains(net, *len, dest))
            .max_by_key(|(len, _, _)| *len);
        best.is_some_and(|(_, _, ports)| {
            ports.rules[..ports.count as usize]
                .iter()
                .any(|r| r.protocols & proto != 0 && (r.port_lo..=r.port_hi).contains(&port))
        })
    };
    let addrs: Vec<std::net::IpAddr> = ["127.0.0.1", "127.0.0.2", "10.9.9.9", "10.1.2.3", "11.0.0.1", "::1", "::2"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    for addr in addrs {
        for port in [53, 80, 443, 8080, 8085, 8091] {
            for proto in [PROTO_TCP, PROTO_UDP] {
                let dest = mapped(addr);
                assert_eq!(
                    lookup(&dest, port, proto),
                    g.connect_rule(&dest, port, proto).is_some(),
                    "{addr}:{port}/{proto}"
                );
            }
        }
    }
    // 10.1.2.3:443 must stay allowed although 10.1.0.0/16 (port 80/udp) is the longest match.
    assert!(lookup(&mapped("10.1.2.3".parse().unwrap()), 443, PROTO_TCP));
    // IPv4-mapped IPv6 destinations follow the IPv4 rules.
    assert!(lookup(&mapped("::ffff:127.0.0.1".parse().unwrap()), 8080, PROTO_TCP));
}

#[test]
fn too_many_port_rules_for_one_prefix_is_refused() {
    let rules: Vec<String> = (0..17).map(|i| format!("\"10.0.0.0/8:{}\"", 1000 + i)).collect();
    let text = EXAMPLE.replace("\"127.0.0.1/32:8080\"", &rules.join(", "));
    let g = Grant::parse("x.yaml", &text).unwrap();
    assert!(matches!(CompiledGrant::compile(&g), Err(CompileError::TooManyPortRules { .. })));
}

#[test]
fn normalize_resolves_relative_and_dotdot() {
    assert_eq!(normalize_path("/srv/tickets", "../../etc/shadow"), "/etc/shadow");
    assert_eq!(normalize_path("/", "a/./b//c"), "/a/b/c");
    assert_eq!(normalize_path("/x", "/../../y"), "/y");
}

#[test]
fn every_shipped_policy_parses_and_compiles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut dirs = vec![root];
    let mut checked = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                // Profiles, templates and grants: parsed, validated and compiled as the daemon does.
                crate::policy::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "policies/ holds the default grant, examples, a profile and a template");
}

#[test]
fn ask_rules_parse_and_compile_to_ask_bits() {
    let text = EXAMPLE.replace(
        "write: [\"/tmp/work/**\", \"/var/log/*\"]",
        "write: [\"/tmp/work/**\", {path: \"/etc/hosts\", action: ask}]",
    );
    let g = Grant::parse("ask.yaml", &text).unwrap();
    assert_eq!(g.spec.files.write[1].action, RuleAction::Ask);
    assert_eq!(g.spec.path_access("/etc/hosts"), ACCESS_WRITE << agent_guard_common::path::ASK_SHIFT);
    let compiled: HashMap<u64, PathRule> = CompiledGrant::compile(&g).unwrap().paths.into_iter().collect();
    assert_eq!(kernel_style_match(&compiled, "/etc/hosts"), g.spec.path_access("/etc/hosts"));
    let bad = EXAMPLE.replace("\"/usr/**\"]", "\"/usr/**\", {path: \"/x\", action: maybe}]");
    assert!(error_of(&bad).contains("unknown variant `maybe`"), "{}", error_of(&bad));
    let unknown = EXAMPLE.replace("\"/usr/**\"]", "\"/usr/**\", {path: \"/x\", acton: ask}]");
    assert!(error_of(&unknown).contains("unknown field `acton`"));
}

#[test]
fn an_ask_grant_cannot_keep_the_capability_that_opens_files_by_handle() {
    let asking = EXAMPLE.replace("\"/usr/**\"]", "\"/usr/**\", {path: \"/x\", action: ask}]");
    let keeps = |text: &str| text.replace("  ttl: 15m", "  ttl: 15m\n  capabilities: [CAP_DAC_READ_SEARCH]");
    assert!(
        error_of(&keeps(&asking)).contains("CAP_DAC_READ_SEARCH opens files by handle"),
        "{}",
        error_of(&keeps(&asking))
    );
    // Without `ask` rules it may be kept.
    Grant::parse("ok.yaml", &keeps(EXAMPLE)).unwrap();
}

#[test]
fn the_committed_json_schema_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/policy.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == crate::policy::json_schema(),
        "{} is stale: regenerate it with `cargo xtask codegen`",
        path.display()
    );
}
