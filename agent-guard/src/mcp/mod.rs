//! `agent-guard mcp`: a Model Context Protocol server over stdio that an agent framework starts
//! inside the task, so the agent can see its grant, declare its step and ask for more access.
//! It is a client of the daemon's API like any CLI verb inside a task: it never grants
//! anything; the daemon decides what a tagged process may do, and approvers decide requests.
//!
//! protocol.rs speaks JSON-RPC 2.0 and the MCP lifecycle (protocol 2026-07-28, and the
//! `initialize` handshake of 2025-11-25 and earlier); tools.rs holds the four tools.

mod protocol;
mod tools;

pub use protocol::serve;
pub use tools::DaemonTools;
