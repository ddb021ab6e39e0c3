use std::vec::Vec;

use crate::event::{
    ACTION_BLOCKED, DecodeError, EventHeader, HOOK_CONNECT4, KIND_NET, KernelEvent, NetEvent, VERDICT_OUT_OF_SCOPE,
};

fn net_event() -> NetEvent {
    NetEvent {
        header: EventHeader {
            kind: KIND_NET,
            verdict: VERDICT_OUT_OF_SCOPE,
            reason: 1,
            action: ACTION_BLOCKED,
            task_id: 7,
            tgid: 100,
            pid: 101,
            uid: 0,
            gid: 0,
            ptgid: 99,
            boot_ns: 42,
            exec_ns: 40,
            parent_exec_ns: 30,
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
        },
        hook: HOOK_CONNECT4,
        protocol: 6,
        port: 9090,
        rule_index: crate::event::NO_RULE,
        addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1],
    }
}

fn bytes_of<T>(value: &T) -> Vec<u8> {
    // SAFETY: test-only view of a #[repr(C)] integer-only struct as bytes.
    unsafe { core::slice::from_raw_parts(core::ptr::from_ref::<T>(value).cast::<u8>(), core::mem::size_of::<T>()) }
        .to_vec()
}

#[test]
fn decodes_a_net_record() {
    let event = net_event();
    let decoded = KernelEvent::try_from(bytes_of(&event).as_slice()).unwrap();
    assert_eq!(decoded, KernelEvent::Net(event));
    assert_eq!(decoded.header().task_id, 7);
}

#[test]
fn refuses_short_and_unknown_records() {
    let bytes = bytes_of(&net_event());
    assert_eq!(
        KernelEvent::try_from(&bytes[..90]),
        Err(DecodeError::Short { kind: KIND_NET, len: 90, need: core::mem::size_of::<NetEvent>() })
    );
    assert!(matches!(KernelEvent::try_from(&bytes[..10]), Err(DecodeError::Short { kind: 0, .. })));
    let mut unknown = bytes.clone();
    unknown[0] = 99;
    assert_eq!(KernelEvent::try_from(unknown.as_slice()), Err(DecodeError::UnknownKind(99)));
}

#[test]
fn fnv_matches_the_reference_values() {
    // Published FNV-1a 64 test vectors: both sides must hash identically.
    assert_eq!(crate::path::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(crate::path::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(crate::path::fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn the_most_restrictive_action_decides() {
    use crate::path::{ACCESS_READ, ACCESS_WRITE, ASK_SHIFT, DENY_SHIFT, Decision, FLAG_SHIFT, decide};
    let (r, w) = (ACCESS_READ, ACCESS_WRITE);
    assert_eq!(decide(r, r), Decision::Allow);
    assert_eq!(decide(r, r | w), Decision::OutOfScope);
    assert_eq!(decide(r | (r << ASK_SHIFT), r), Decision::Ask);
    assert_eq!(decide(r | (w << ASK_SHIFT), r | w), Decision::Ask);
    assert_eq!(decide(r | (r << FLAG_SHIFT), r), Decision::Flag);
    assert_eq!(decide((r << FLAG_SHIFT) | (r << ASK_SHIFT), r), Decision::Ask);
    assert_eq!(decide(r | (r << ASK_SHIFT) | (r << DENY_SHIFT), r), Decision::Deny);
    assert_eq!(decide(r << DENY_SHIFT, r | w), Decision::Deny);
    assert_eq!(decide(w << DENY_SHIFT, r), Decision::OutOfScope);
    assert_eq!(decide(0, r), Decision::OutOfScope);
    let approved = crate::path::APPROVED_SHIFT;
    assert_eq!(decide((r << ASK_SHIFT) | (r << approved), r), Decision::Allow);
    assert_eq!(decide((r << DENY_SHIFT) | (r << approved), r), Decision::Deny);
}
