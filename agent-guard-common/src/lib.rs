//! Types the kernel programs and the daemon both see.
//!
//! Every type here is `#[repr(C)]` with explicit widths and explicit padding fields, so its
//! layout is the same on both sides of the map/ring-buffer boundary; sizes are asserted at
//! compile time. Ring-buffer events are decoded in userspace with `TryFrom<&[u8]>` (feature
//! `user`), never by transmuting.
#![no_std]
#![warn(missing_docs)]

pub mod event;
pub mod maps;
pub mod net;
pub mod path;
pub mod task;

#[cfg(feature = "user")]
mod pod;

#[cfg(all(test, feature = "user"))]
extern crate std;

#[cfg(all(test, feature = "user"))]
mod tests;
