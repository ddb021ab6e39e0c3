//! The control flow's end: the task registry (open tasks, their grants, held actions), kept
//! in step with the kernel maps; the state saved for the next daemon; policy reloads.

pub mod registry;
pub mod reload;
pub mod state;
