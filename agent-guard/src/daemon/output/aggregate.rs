//! Flood control: a looping agent repeating one allowed or flagged action must not flood the
//! SIEM. The first event of a kind passes at once; identical ones of the same process within
//! the window are counted, and when the window closes one more event says how many
//! (`count`, `aggregated: true`). Denied and held actions, approvals and everything that is not
//! a kernel action pass untouched: they are never aggregated away.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

use crate::daemon::{
    clock,
    events::schema::{Decision, Event, Kind, ObjectRef},
};

/// What makes two events "identical": same process image, kind, decision, rule, object and
/// command line (so a re-exec with other arguments is never folded away).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    pid: u32,
    exec_id: Option<String>,
    argv: Option<Vec<String>>,
    kind: Kind,
    decision: Option<Decision>,
    rule: Option<String>,
    object: String,
}

struct Window {
    opened: Instant,
    /// The first event, the template of the aggregate.
    first: Event,
    repeats: u64,
}

/// Folds repeated allowed and flagged events of one process into counted ones.
pub struct Aggregator {
    window: Duration,
    open: HashMap<Key, Window>,
}

/// Most keys tracked at once; beyond, events pass unaggregated (nothing is lost).
const MAX_KEYS: usize = 65_536;

impl Aggregator {
    pub fn new(window: Duration) -> Aggregator {
        Aggregator { window, open: HashMap::new() }
    }

    fn key(event: &Event) -> Option<Key> {
        if !matches!(event.decision(), Some(Decision::Allowed | Decision::Flagged)) {
            return None;
        }
        let process = event.process.as_ref()?;
        // Only allowed and flagged actions get here: held ones, answers, lifecycle and guard
        // events are never folded.
        let object = match event.body.object()? {
            ObjectRef::Network(net) => format!("net {} {} {}", net.address, net.port, net.protocol),
            ObjectRef::Dns(dns) => format!("dns {} {} {}", dns.question, dns.qtype, dns.rcode),
            ObjectRef::File(file) => format!("file {} {:?} {:?}", file.path, file.access, file.operation),
            ObjectRef::Executable(exe) => format!("exec {}", exe.path),
            ObjectRef::Escape(escape) => format!("escape {} {} {:?}", escape.route, escape.detail, escape.target_pid),
            // Requests are answers' subjects: never folded.
            ObjectRef::Access(_) => return None,
        };
        Some(Key {
            pid: process.pid,
            exec_id: process.exec_id.clone(),
            argv: process.argv.clone(),
            kind: event.kind(),
            decision: event.decision(),
            rule: event.rule().map(str::to_owned),
            object,
        })
    }

    /// Whether `event` goes out now (`true`) or was counted into an open window.
    pub fn admit(&mut self, event: &Event) -> bool {
        if self.window.is_zero() {
            return true;
        }
        let Some(key) = Self::key(event) else { return true };
        if let Some(window) = self.open.get_mut(&key) {
            window.repeats += 1;
            return false;
        }
        if self.open.len() < MAX_KEYS {
            self.open.insert(key, Window { opened: Instant::now(), first: event.clone(), repeats: 0 });
        }
        true
    }

    /// Closes the windows older than the window length (all of them with `all`): one aggregate
    /// event per window that saw repeats. Returns how many events the aggregates stand for.
    pub fn expire(&mut self, host: &str, all: bool, out: &mut Vec<Event>) -> u64 {
        let now = Instant::now();
        let mut folded = 0;
        self.open.retain(|_, window| {
            if !all && now.duration_since(window.opened) < self.window {
                return true;
            }
            if window.repeats > 0 {
                let mut event = window.first.clone();
                event.event_id = uuid::Uuid::now_v7().to_string();
                event.time = clock::rfc3339(SystemTime::now());
                event.host = host.to_string();
                event.repeats = Some(window.repeats);
                event.aggregated = true;
                if let Some(verdict) = event.body.verdict_mut() {
                    verdict.reason = format!(
                        "{} more identical events of process {} in {}",
                        window.repeats,
                        window.first.process.as_ref().map_or(0, |p| p.pid),
                        humantime::format_duration(Duration::from_secs(now.duration_since(window.opened).as_secs()))
                    );
                }
                folded += window.repeats;
                out.push(event);
            }
            false
        });
        folded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::Level,
        daemon::events::schema::{Access, Action, Body, FileObject, Process, Verdict},
    };

    fn event(decision: Decision, pid: u32, path: &str) -> Event {
        let verdict =
            Verdict { decision, policy_decision: None, enforcement: Level::Lsm, rule: "r".into(), reason: "x".into() };
        let object = FileObject { path: path.into(), access: vec![Access::Read], operation: None };
        let mut e = Event::new(Body::FileOpen(Action { verdict, object }), "h", SystemTime::now());
        e.process = Some(Process {
            pid,
            tid: pid,
            ppid: None,
            uid: 0,
            gid: 0,
            comm: "x".into(),
            executable: None,
            argv: None,
            exec_id: None,
            parent_exec_id: None,
            ancestry: Vec::new(),
        });
        e
    }

    #[test]
    fn repeats_are_folded_into_one_counted_event() {
        let mut agg = Aggregator::new(Duration::from_secs(60));
        let flagged = event(Decision::Flagged, 7, "/a");
        assert!(agg.admit(&flagged));
        for _ in 0..999 {
            assert!(!agg.admit(&flagged));
        }
        // Another process, another path: their own windows.
        assert!(agg.admit(&event(Decision::Flagged, 8, "/a")));
        assert!(agg.admit(&event(Decision::Flagged, 7, "/b")));
        let mut out = Vec::new();
        assert_eq!(agg.expire("h", false, &mut out), 0, "windows still open");
        assert_eq!(agg.expire("h", true, &mut out), 999);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].repeats, Some(999));
        assert!(out[0].aggregated);
        assert_ne!(out[0].event_id, flagged.event_id);
    }

    #[test]
    fn denials_are_never_aggregated() {
        let mut agg = Aggregator::new(Duration::from_secs(60));
        let denied = event(Decision::Denied, 7, "/a");
        for _ in 0..10 {
            assert!(agg.admit(&denied));
        }
        let held = event(Decision::Held, 7, "/a");
        assert!(agg.admit(&held) && agg.admit(&held));
        assert_eq!(agg.expire("h", true, &mut Vec::new()), 0);
    }

    #[test]
    fn a_zero_window_turns_it_off() {
        let mut agg = Aggregator::new(Duration::ZERO);
        let flagged = event(Decision::Flagged, 7, "/a");
        assert!(agg.admit(&flagged) && agg.admit(&flagged));
    }
}
