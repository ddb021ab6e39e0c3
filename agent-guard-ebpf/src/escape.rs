//! Reporting refused attempts to leave a task's boundary (`KIND_ESCAPE)`: the routes no grant
//! field opens, refused for tagged processes whatever their grant's mode, so an agent in
//! `audit` mode cannot use them either (docs/design.md, the mediation table).

use agent_guard_common::event::{
    ACTION_BLOCKED, EscapeEvent, KIND_ESCAPE, KIND_TAMPER, REASON_NONE, TaskEvent, VERDICT_OUT_OF_SCOPE,
};

use crate::{emit, task::CurrentTask};

/// Reports that `task` was refused `what` (ESCAPE_*) on `target` with `arg`; returns false,
/// the hooks' "not allowed", so a refusal reads `return refuse(...)`.
#[inline(always)]
pub fn refuse(task: &CurrentTask, what: u32, target: u32, arg: u64) -> bool {
    report(task, what, target, arg, ACTION_BLOCKED);
    false
}

/// Reports `what` with the `EventHeader::action` the hook took (`ACTION_ALLOWED` where the
/// grant's audit mode lets a grant-governed attempt through).
#[inline(always)]
pub fn report(task: &CurrentTask, what: u32, target: u32, arg: u64, action: u32) {
    let event = EscapeEvent {
        header: emit::header(KIND_ESCAPE, VERDICT_OUT_OF_SCOPE, REASON_NONE, action, task.task_id),
        what,
        target,
        arg,
    };
    emit::send_alert(&event);
}

/// Reports an attempt on the daemon itself (`KIND_TAMPER`, `what`: TAMPER_*) by the process
/// of `task_id` (0 when the sender is not tagged: a signal routed through a file owner can be
/// delivered from any context); returns false.
#[inline(always)]
pub fn tamper(task_id: u32, what: u32, target: u32) -> bool {
    let event = TaskEvent {
        header: emit::header(KIND_TAMPER, VERDICT_OUT_OF_SCOPE, REASON_NONE, ACTION_BLOCKED, task_id),
        child_tgid: target,
        detail: what,
    };
    emit::send_alert(&event);
    false
}
