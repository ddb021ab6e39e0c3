//! The control flow's end: the task registry (open tasks, their grants, held actions), kept
//! in step with the kernel maps; the state saved for the next daemon; policy reloads.
//! `registry.rs` holds the types; each concern adds its methods from its own file.

mod adopt;
mod approvals;
pub mod channels;
mod dns;
mod lifecycle;
mod open;
pub mod registry;
pub mod reload;
mod requests;
pub mod state;
pub mod supervise;

pub use open::{GrantRequest, OpenRequest};
pub use requests::Decider;
