//! leadrelay's common crate: the lead model, webhook verification, validation gates, the pure
//! decisions (enrichment, qualification, routing), alert rendering, the ports and the stage
//! code that runs on them. Entry points (the `leadrelay` binary, the Lambda functions) only
//! wire adapters to [`stages::Pipeline`].
//!
//! The modules form a tree; imports point down only (`make lint` runs
//! `scripts/check-core-modules.py`, which fails on a loop):
//!
//! 1. Leaves, importing no module outside this list: [`model`], [`cleaning`], [`lists`],
//!    [`json_path`], [`stated`], [`presets`], [`signature`] (with the schemes declared as
//!    data), [`mapping`] (a platform's payload as a capture event), [`calendar`], [`topics`],
//!    [`url_prefix`], [`email`] (address and message values), [`metrics`], [`jwt`] (RS256
//!    tokens), [`reply_relay`] (reply addresses and the inbound provider's signature).
//! 2. [`config`]: the configuration, read and checked; imports leaves only.
//! 3. The pure decisions and renderers, on the configuration: [`validate`], [`enrichment`],
//!    [`rulebook`] (enrichment from the table, qualification), [`routing`], [`render`],
//!    [`claim_link`], [`salesforce`] (the Lead and Task a lead becomes), [`activity`] (what a
//!    touch, meeting or outcome stamps on a lead); and [`replay`] (rulebook and routing
//!    without a store, for the CLI); [`report`] (speed-to-lead figures and the handoff audit,
//!    computed from each lead's compact facts).
//! 4. [`ports`]: what the stages talk to, in terms of the layers below.
//! 5. [`stages`]: the [`stages::Pipeline`], one file per stage.

pub mod activity;
pub mod calendar;
pub mod claim_link;
pub mod cleaning;
pub mod config;
pub mod console;
pub mod email;
pub mod enrichment;
pub mod json_path;
pub mod jwt;
pub mod lists;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod presets;
pub mod render;
pub mod replay;
pub mod reply_relay;
pub mod report;
pub mod routing;
pub mod rulebook;
pub mod salesforce;
pub mod signature;
pub mod stages;
pub mod stated;
pub mod topics;
pub mod url_prefix;
pub mod validate;
