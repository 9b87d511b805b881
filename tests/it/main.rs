//! The end-to-end tests, one binary: each module is one area, `support` what they share.
//! One binary links the workspace and the AWS SDKs once, not once per file. Its tests run on
//! parallel threads: a heavy or deadline-bound test takes `support::serial::heavy()`, and
//! children of the real binary get ports no parallel test's connection can take first.

mod support;

mod activity_intake;
mod after_hours;
mod aws_e2e;
mod channels;
mod claim_and_escalation;
mod claim_http;
mod claim_policy;
mod conformance;
mod console_access;
mod console_browser;
mod console_dashboard;
mod console_operations;
mod conversation_fetch;
mod crash_recovery;
mod crm_lookup;
mod digest;
mod duplicates;
mod email;
mod enrichment_outage;
mod enrichment_providers;
mod faults;
mod hubspot;
mod intake;
mod lambda_batch;
mod lead_activity;
mod logs;
mod pipeline;
mod presets_chat;
mod presets_forms;
mod reply_relay;
mod report;
mod routing_concurrency;
mod routing_rules;
mod salesforce;
mod server_limits;
mod ses;
mod slack_app;

mod webhook_contract;
