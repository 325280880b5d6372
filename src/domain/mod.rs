//! Domain types, parsed at the edge: once a value of these types exists, it is valid.

pub mod area;
pub mod calendar;
pub mod catalog;
pub mod delivery;
pub mod document;
pub mod ids;
pub mod item;
pub mod page;
pub mod review;
pub mod text;
pub mod user;
