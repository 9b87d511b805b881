//! The notifier adapter, kept under its old path: see [`crate::channels`].

pub use crate::channels::Channels;
