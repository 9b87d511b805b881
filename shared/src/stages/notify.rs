//! The notify stage.

mod email;
