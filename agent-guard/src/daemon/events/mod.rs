//! The data flow's middle: the event schema (what every output receives), decoding kernel
//! records into events, the names of escape routes and tamper attempts, and the lineage of
//! tagged processes. Nothing here reaches back into the task registry: decoding sees tasks
//! through the read-only [`decode::TaskView`].

pub mod decode;
pub mod escape;
pub mod lineage;
pub mod schema;
