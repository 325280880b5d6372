//! The wire protocol between Herald and village device firmware (notice boards, loudspeaker
//! controllers). Sans-IO: no async runtime, no sockets, time passed in by the caller.
//!
//! **Architecture Invariant:** this crate depends on no async runtime and no Herald crate, so
//! a device vendor can build it for a microcontroller. The messages, their golden byte vectors
//! and `PROTOCOL.md` arrive with the device channels; until then the crate holds no messages.

#![no_std]
