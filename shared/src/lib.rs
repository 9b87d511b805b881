//! leadrelay's common crate: the lead model, webhook verification, validation gates, the pure
//! decisions (enrichment, qualification, routing), alert rendering, the ports and the stage
//! code that runs on them. Entry points (the `leadrelay` binary, the Lambda functions) only
//! wire adapters to [`stages::Pipeline`].

pub mod calendar;
pub mod claim_link;
pub mod cleaning;
pub mod config;
pub mod email;
pub mod enrichment;
pub mod lists;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod render;
pub mod replay;
pub mod routing;
pub mod rulebook;
pub mod signature;
pub mod stages;
pub mod topics;
pub mod url_prefix;
pub mod validate;
