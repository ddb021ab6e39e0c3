//! Userspace-only: `aya::Pod` for map types and checked decoding of ring-buffer records.

use crate::event::{
    EscapeEvent, EventHeader, ExecEvent, FileEvent, KIND_ESCAPE, KIND_EXEC, KIND_EXEC_START, KIND_FILE, KIND_FORK,
    KIND_NET, KIND_TAG_LOST, KIND_TAMPER, KIND_TASK_EMPTY, NetEvent, TaskEvent,
};
use crate::net::{LearnedKey, LearnedPorts, NetKey, NetPorts};
use crate::path::{PathKey, PathRule};
use crate::task::{Approval, ProcTag, TaskEntry, UsageKey};

// SAFETY: each type is #[repr(C)], made only of integers and integer arrays, with explicit
// padding fields (sizes asserted in the defining modules), so every bit pattern is valid.
unsafe impl aya::Pod for ProcTag {}
unsafe impl aya::Pod for TaskEntry {}
unsafe impl aya::Pod for Approval {}
unsafe impl aya::Pod for UsageKey {}
unsafe impl aya::Pod for NetKey {}
unsafe impl aya::Pod for NetPorts {}
unsafe impl aya::Pod for LearnedKey {}
unsafe impl aya::Pod for LearnedPorts {}
unsafe impl aya::Pod for PathKey {}
unsafe impl aya::Pod for PathRule {}

/// A record from the `EVENTS` ring buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// `KIND_NET`.
    Net(NetEvent),
    /// `KIND_FILE` (boxed: a path is large).
    File(Box<FileEvent>),
    /// `KIND_EXEC` (boxed: a path and arguments are large).
    Exec(Box<ExecEvent>),
    /// `KIND_TASK_EMPTY`.
    TaskEmpty(TaskEvent),
    /// `KIND_TAG_LOST`.
    TagLost(TaskEvent),
    /// `KIND_TAMPER`.
    Tamper(TaskEvent),
    /// `KIND_FORK`.
    Fork(TaskEvent),
    /// `KIND_EXEC_START`.
    ExecStart(TaskEvent),
    /// `KIND_ESCAPE`.
    Escape(EscapeEvent),
}

extern crate alloc;
use alloc::boxed::Box;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// Why a ring-buffer record could not be decoded.
pub enum DecodeError {
    /// The record is shorter than the struct its kind names.
    Short {
        /// The record's KIND_*.
        kind: u32,
        /// Bytes received.
        len: usize,
        /// Bytes the struct needs.
        need: usize,
    },
    /// A KIND_* this daemon does not know (programs newer than the daemon).
    UnknownKind(u32),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Short { kind, len, need } => {
                write!(f, "event of kind {kind} is {len} bytes, expected {need}")
            }
            DecodeError::UnknownKind(kind) => write!(f, "unknown event kind {kind}"),
        }
    }
}

/// Copies a plain-old-data record out of `bytes` after checking its length.
fn read_record<T: Copy>(kind: u32, bytes: &[u8]) -> Result<T, DecodeError> {
    let need = core::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short { kind, len: bytes.len(), need });
    }
    // SAFETY: length checked above; T is one of this crate's #[repr(C)] integer-only event
    // structs, for which every bit pattern is valid; read_unaligned has no alignment need.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

impl TryFrom<&[u8]> for KernelEvent {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let header: EventHeader = read_record(0, bytes)?;
        match header.kind {
            KIND_NET => read_record(header.kind, bytes).map(KernelEvent::Net),
            KIND_FILE => read_record(header.kind, bytes).map(|e| KernelEvent::File(Box::new(e))),
            KIND_EXEC => read_record(header.kind, bytes).map(|e| KernelEvent::Exec(Box::new(e))),
            KIND_TASK_EMPTY => read_record(header.kind, bytes).map(KernelEvent::TaskEmpty),
            KIND_TAG_LOST => read_record(header.kind, bytes).map(KernelEvent::TagLost),
            KIND_TAMPER => read_record(header.kind, bytes).map(KernelEvent::Tamper),
            KIND_FORK => read_record(header.kind, bytes).map(KernelEvent::Fork),
            KIND_EXEC_START => read_record(header.kind, bytes).map(KernelEvent::ExecStart),
            KIND_ESCAPE => read_record(header.kind, bytes).map(KernelEvent::Escape),
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

impl KernelEvent {
    /// The header every record starts with.
    pub fn header(&self) -> &EventHeader {
        match self {
            KernelEvent::Net(e) => &e.header,
            KernelEvent::File(e) => &e.header,
            KernelEvent::Exec(e) => &e.header,
            KernelEvent::Escape(e) => &e.header,
            KernelEvent::TaskEmpty(e)
            | KernelEvent::TagLost(e)
            | KernelEvent::Tamper(e)
            | KernelEvent::Fork(e)
            | KernelEvent::ExecStart(e) => &e.header,
        }
    }
}
