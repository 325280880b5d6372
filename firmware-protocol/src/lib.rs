//! The wire protocol between Herald and village device firmware (loudspeaker controllers,
//! notice boards). `PROTOCOL.md` beside this crate is the specification; this crate is its
//! reference implementation and the source of its golden vectors.
//!
//! Sans-IO: no async runtime, no sockets, no clock, no RNG. The caller passes the time in,
//! hands over received bytes and sends what comes back, so the same code runs in the hub, in a
//! fleet simulator and (as a model for C) on a device.
//!
//! - [`frame`]: the binary envelope and its Ed25519 signature.
//! - [`command`]: hub → device messages; [`report`]: device → hub messages.
//! - [`topic`]: MQTT topic names.
//! - [`device`]: the device's verifying state machine.
//! - [`hub`]: signing commands and checking reports.
//! - [`player`]: what a device does with accepted plays and displays: priority, preemption,
//!   cancel, expiry, and the acks and proofs that report them.
//!
//! **Architecture Invariant:** this crate depends on no async runtime and no Herald crate and
//! builds `no_std` + `alloc` (`--no-default-features`), so a vendor can build it for a
//! microcontroller.

#![no_std]

extern crate alloc;

pub mod command;
pub mod device;
pub mod frame;
pub mod hex;
pub mod hub;
pub mod player;
pub mod report;
pub mod topic;
mod wire;

pub use command::{Audience, Command, CommandBody};
pub use device::{DeviceSession, Output};
pub use frame::{Direction, Frame, FrameError, KeyPair};
pub use hub::{Issuer, open_report};
pub use report::{Report, ReportBody};
pub use wire::{DecodeError, MAX_SAFE_INTEGER};
