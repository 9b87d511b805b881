//! A prospect's reply to the acknowledgement, as the inbound-mail provider (Mailgun's route
//! `forward()`) posts it to `POST /inbound/email`: verified, tied to its lead by the reply
//! address leadrelay issued, and handed to the notify stage through its queue. Nothing is sent
//! here: the reply is answered 2xx only once its message is queued, and the notify stage
//! forwards it to whoever owns the lead by then (`notify/reply.rs`).

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::Pipeline;
use crate::email::Mailbox;
use crate::model::Envelope;
use crate::ports::{DeliveryStart, QueueError, StoreError};
use crate::reply_relay::{self, ForwardedReply, ProviderSignature, TokenError};
use crate::signature::SignatureError;

/// The reply's text is cut beyond this many characters: the queue message carries it, and SQS
/// takes 256 KiB (a character is at most 6 bytes once JSON-escaped).
pub const REPLY_TEXT_LIMIT: usize = 32_000;
/// The subject is cut beyond this.
const SUBJECT_LIMIT: usize = 300;

/// The fields of one inbound post, as the provider sent them (Mailgun's names in comments).
#[derive(Default)]
pub struct InboundPost {
    /// `recipient`: the SMTP recipient(s), the reply address among them.
    pub recipient: Option<String>,
    /// `sender`: the SMTP envelope sender.
    pub sender: Option<String>,
    /// `from`: the `From` header.
    pub from: Option<String>,
    pub subject: Option<String>,
    /// `body-plain`.
    pub body_plain: Option<String>,
    /// `stripped-text`: the reply without quoted parts and signature.
    pub stripped_text: Option<String>,
    /// `Message-Id`.
    pub message_id: Option<String>,
    pub timestamp: Option<String>,
    pub token: Option<String>,
    pub signature: Option<String>,
}

/// What became of a post that was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyIntake {
    /// Queued for the notify stage.
    Forwarded { lead_id: String },
    /// The same signed post again (its token was seen): nothing queued.
    Duplicate { lead_id: String },
}

/// Why a post was refused. Each maps to one HTTP status; details go to the log only.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// `[notify.email.replies]` is not configured (404).
    #[error("inbound e-mail is not configured")]
    NotConfigured,
    /// The provider's signature is missing, forged or stale (401; a genuine provider retries,
    /// which helps while a rotated signing key is being configured).
    #[error("signature refused: {0}")]
    Unauthorized(#[from] SignatureError),
    /// Signed, but not to an address leadrelay issued, or to a lead that does not exist
    /// (406: the provider stops retrying).
    #[error("not a reply address of this relay: {0}")]
    NotOurs(#[from] TokenError),
    #[error("the reply address names no stored lead")]
    UnknownLead,
    /// Signed and ours, but with nothing to forward (406).
    #[error("the post has no usable {0}")]
    Unusable(&'static str),
    /// The same post is being taken right now (503: retried later, then a duplicate).
    #[error("the same post is being taken by another request")]
    InFlight,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The store key under which a provider's token is remembered (one per token, so a captured
/// post cannot be replayed to another lead either: the token is all Mailgun signs).
const TOKEN_RECEIPT: &str = "mailgun-token";

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Pipeline {
    /// Takes one inbound post: checks the provider's signature (in constant time) and age,
    /// finds the lead the reply address names, refuses a token seen before, and queues the
    /// reply for the notify stage. Answered `Ok` only once the message is queued.
    pub async fn receive_reply(&self, post: &InboundPost) -> Result<ReplyIntake, InboundError> {
        let replies = self
            .config
            .notify
            .email
            .as_ref()
            .and_then(|e| e.replies.as_ref())
            .ok_or(InboundError::NotConfigured)?;
        let relay = replies.relay().ok_or(InboundError::NotConfigured)?;
        let field = |value: &Option<String>| value.as_deref().unwrap_or_default().to_owned();
        let (timestamp, token) = (field(&post.timestamp), field(&post.token));
        let signature = field(&post.signature);
        reply_relay::verify_mailgun(
            &replies.keys,
            &ProviderSignature {
                timestamp: &timestamp,
                token: &token,
                signature: &signature,
            },
            self.clock.now(),
        )?;
        let lead_id = relay.lead_of(
            &self.config.claim.link_keys,
            post.recipient.as_deref().unwrap_or_default(),
        )?;
        // A lead this version cannot read is still taken: the notify stage quarantines its
        // message in the dead-letter queue, from where it is replayed once the lead is readable.
        let trace_id = match self.store.get_lead(&lead_id).await {
            Ok(Some(lead)) => lead.trace_id,
            Ok(None) => return Err(InboundError::UnknownLead),
            Err(StoreError::Undecodable { .. }) => lead_id.clone(),
            Err(other) => return Err(other.into()),
        };
        // The From header, else the SMTP sender: whom the owner's answer goes to.
        let from = [&post.from, &post.sender]
            .into_iter()
            .flatten()
            .map(|text| crate::render::truncate(text.trim(), SUBJECT_LIMIT))
            .find(|text| text.parse::<Mailbox>().is_ok())
            .ok_or(InboundError::Unusable("sender address"))?;
        let text = [&post.stripped_text, &post.body_plain]
            .into_iter()
            .flatten()
            .find(|text| !text.trim().is_empty())
            .map(|text| crate::render::truncate(text, REPLY_TEXT_LIMIT))
            .unwrap_or_default();
        // The receipt that makes a redelivered message go out once: its Message-Id, else (a
        // message without one) this post's token.
        let message_key = match post.message_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => sha256_hex(id),
            _ => sha256_hex(&format!("token:{token}")),
        };
        let reply = ForwardedReply {
            message_key,
            from,
            subject: crate::render::truncate(
                post.subject.as_deref().unwrap_or_default(),
                SUBJECT_LIMIT,
            ),
            text,
        };

        let seen = format!("inbound:{}", sha256_hex(&token));
        let (start, _claim) = self.begin_delivery(&seen, TOKEN_RECEIPT).await?;
        match start {
            DeliveryStart::AlreadyDelivered => {
                info!(lead_id = %lead_id, stage = "inbound", "inbound reply already taken (same token)");
                return Ok(ReplyIntake::Duplicate { lead_id });
            }
            DeliveryStart::InFlight { .. } => return Err(InboundError::InFlight),
            DeliveryStart::Proceed => {}
        }
        let envelope = Envelope::reply(&lead_id, &trace_id, reply);
        if let Err(error) = self.queue.send(envelope.stage, &envelope).await {
            if let Err(release) = self.store.release_delivery(&seen, TOKEN_RECEIPT).await {
                warn!(lead_id = %lead_id, stage = "inbound", error = %release,
                    "could not release the inbound token after a failed send");
            }
            return Err(error.into());
        }
        self.store
            .finish_delivery(&seen, TOKEN_RECEIPT, self.clock.now())
            .await?;
        info!(lead_id = %lead_id, trace_id = %trace_id, stage = "inbound",
            "prospect reply queued for the lead's owner");
        Ok(ReplyIntake::Forwarded { lead_id })
    }
}
