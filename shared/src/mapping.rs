//! Payload mapping as data: how a platform's own webhook body becomes a capture event, so a
//! chatbot or form platform is supported by a few lines of configuration (or a shipped
//! preset) instead of a relay someone has to write and host.
//!
//! A mapping says which events are leads (others are answered `ignored` and change nothing),
//! the kind each becomes, and where each lead field is, with fallbacks and a join. Every form
//! field the payload carries is kept on the lead, mapped or not; fields that are not lead
//! fields (`country`, `company_size`, any question) become form fields under their names.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use crate::json_path::{self, JsonPath, PathError};
use crate::model::{ActivityKind, CaptureEvent, EventKind, Turn};

/// `[sources.mapping]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Where the event name is; without it every payload is a lead of kind `kind`.
    #[serde(default)]
    pub event: Option<String>,
    /// The event names that are leads, each with the kind it becomes. Any other event is
    /// answered `200 ignored`.
    #[serde(default)]
    pub lead_events: BTreeMap<String, EventKind>,
    /// The kind of every payload when `event` is not set.
    #[serde(default)]
    pub kind: Option<EventKind>,
    /// The platform's own event (or submission) id: the dedupe key.
    #[serde(default)]
    pub event_id: Option<FieldRule>,
    #[serde(default)]
    pub timestamp: Option<FieldRule>,
    /// Lead fields by name ([`LEAD_FIELDS`]); any other name becomes a form field.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldRule>,
    /// Lists or objects in the payload whose every entry becomes a form field.
    #[serde(default)]
    pub form_fields: Vec<FormFieldsConfig>,
    #[serde(default)]
    pub transcript: Option<TranscriptConfig>,
    /// What a lead event that carries neither e-mail nor phone gets: `refuse` (400, naming the
    /// paths tried; the default) or `ignore` (200 ignored, for platforms that post every chat
    /// message, such as Landbot, and would retry a refusal).
    #[serde(default)]
    pub without_contact: WithoutContact,
    /// Lead fields (and `transcript`) the platform sends as HTML: tags are dropped, block ends
    /// become line breaks and entities are decoded, so the rep reads text (it is escaped again
    /// for each channel).
    #[serde(default)]
    pub html: Vec<String>,
    /// `[mapping.activity]`: the platform's events that are activity after the alert (a
    /// meeting booked, a reply, a CRM status), recorded on the lead they name.
    #[serde(default)]
    pub activity: Option<ActivityMappingConfig>,
}

/// `[mapping.activity]` as written: which events are activity, of which kind, and where the
/// lead id, the prospect's e-mail, the time, the actor, the detail and the event's key are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityMappingConfig {
    /// Where the activity's event name is, when it is not the mapping's `event` (a CRM body
    /// with its own key, such as HubSpot's `leadrelay_event`).
    #[serde(default)]
    pub event: Option<String>,
    /// Each platform event that is activity, and the activity kind it records (`called`,
    /// `meeting_booked`, `won`, ...), or `{ kind, when }`: that kind only when the path `when`
    /// finds something (Cal.com's attendee marked no-show).
    #[serde(default)]
    pub events: BTreeMap<String, ActivityEventConfig>,
    /// A `status_changed` whose `detail` is one of these values records this kind instead
    /// (a deal stage `closedwon` → `won`).
    #[serde(default)]
    pub statuses: BTreeMap<String, String>,
    /// The leadrelay lead id (a hidden form field, a booking link's parameter).
    #[serde(default)]
    pub lead_id: Option<FieldRule>,
    /// The prospect's e-mail; by default the mapping's lead `email` field.
    #[serde(default)]
    pub email: Option<FieldRule>,
    /// When it happened; by default when it was received.
    #[serde(default)]
    pub at: Option<FieldRule>,
    /// Who did it (a rep's or admin's name or e-mail).
    #[serde(default)]
    pub by: Option<FieldRule>,
    /// A status, a stage, a meeting's title.
    #[serde(default)]
    pub detail: Option<FieldRule>,
    /// The platform's id of this event; by default the hash of the signed body.
    #[serde(default)]
    pub key: Option<FieldRule>,
    /// Conditions that mark a machine-sent event (a bot's reply, a sequence's e-mail): the
    /// text at `path` is one of `values`. Any one that holds makes the event automated.
    #[serde(default)]
    pub automated: Vec<AutomatedConfig>,
}

/// An activity event's kind, or its kind and the path that must find something.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ActivityEventConfig {
    Kind(String),
    When { kind: String, when: String },
}

/// The text at `path` is one of `values` (compared exactly).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomatedConfig {
    pub path: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithoutContact {
    #[default]
    Refuse,
    Ignore,
}

/// Where one value is: one source, or several tried in order until one finds something.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FieldRule {
    One(ValueSource),
    FirstOf(Vec<ValueSource>),
}

/// A path, or paths whose texts are joined (first and last name).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ValueSource {
    Path(String),
    Join {
        join: Vec<String>,
        #[serde(default = "space")]
        separator: String,
    },
}

fn space() -> String {
    " ".into()
}

/// Entries of a list (`list`, each entry's name at `key`, its value at `value`) or of an
/// object (`object`, each member's name and value, or the value at `value` inside it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormFieldsConfig {
    #[serde(default)]
    pub list: Option<String>,
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub key: Vec<String>,
    #[serde(default)]
    pub value: Vec<String>,
    /// Where an entry lists its choices, for platforms whose answer holds the chosen options'
    /// ids (Tally): each id in the answer becomes that option's label.
    #[serde(default)]
    pub options: Option<OptionsConfig>,
}

/// A list of `{id, label}` choices inside an entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionsConfig {
    pub list: String,
    #[serde(default = "option_id")]
    pub id: String,
    #[serde(default = "option_text")]
    pub text: String,
}

fn option_id() -> String {
    "id".into()
}

fn option_text() -> String {
    "text".into()
}

/// The conversation: a list of messages, each with who spoke and what they said.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptConfig {
    pub list: String,
    pub role: Vec<String>,
    pub text: Vec<String>,
}

/// The lead fields a mapping can fill, by the name it uses for them.
pub const LEAD_FIELDS: &[&str] = &[
    "email",
    "name",
    "company",
    "phone",
    "job_title",
    "question",
    "page_url",
    "ip",
    "user_agent",
    "transcript_url",
    "conversation_id",
    "visitor_id",
];

/// A refused payload: the message names the JSON path, so the user sees what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MappingError {
    pub message: String,
    /// The JSON path (or mapping key) at fault.
    pub path: String,
}

/// What a payload is, once mapped.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    Lead {
        capture: Box<CaptureEvent>,
        /// The platform's own event id, when the mapping names one and it is present.
        event_id: Option<String>,
    },
    /// An event the mapping lists as activity after the alert. `also_lead` is set when the
    /// event is a lead event too (a booking): it is a lead when the activity finds none.
    Activity {
        activity: Box<MappedActivity>,
        also_lead: bool,
    },
    /// An event that is not a lead; its name, for the answer and the log.
    Ignored { event: String },
}

/// An activity event as the payload states it. Texts are bounded so that whatever is
/// accepted can be stored with the lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedActivity {
    /// The platform's event name.
    pub event: String,
    pub kind: ActivityKind,
    pub lead_id: Option<String>,
    pub email: Option<String>,
    /// When it happened, when the payload says.
    pub at: Option<Timestamp>,
    pub by: Option<String>,
    pub detail: Option<String>,
    /// The platform's id of the event, when the payload has one.
    pub key: Option<String>,
    pub automated: bool,
}

/// The longest actor or detail text kept on an activity; longer ones are cut.
pub const MAX_ACTIVITY_TEXT: usize = 200;
/// The longest lead id, e-mail or key an activity carries; a longer one is not one.
pub const MAX_ACTIVITY_ID: usize = 254;

/// A compiled [`FieldRule`]: sources tried in order.
#[derive(Debug, Clone)]
struct Rule(Vec<Source>);

#[derive(Debug, Clone)]
enum Source {
    Path(JsonPath),
    Join(Vec<JsonPath>, String),
}

impl Source {
    fn text(&self, payload: &Value) -> Option<String> {
        match self {
            Source::Path(path) => path.text(payload),
            Source::Join(paths, separator) => {
                let parts: Vec<String> = paths.iter().filter_map(|p| p.text(payload)).collect();
                (!parts.is_empty()).then(|| parts.join(separator))
            }
        }
    }

    /// The raw value (a form field keeps lists and numbers as they came).
    fn value(&self, payload: &Value) -> Option<Value> {
        match self {
            Source::Path(path) => path
                .find(payload)
                .filter(|v| !matches!(v, Value::Null))
                .cloned(),
            Source::Join(..) => self.text(payload).map(Value::String),
        }
    }
}

impl Rule {
    fn text(&self, payload: &Value) -> Option<String> {
        self.0.iter().find_map(|s| s.text(payload))
    }

    fn value(&self, payload: &Value) -> Option<Value> {
        self.0.iter().find_map(|s| s.value(payload))
    }

    fn paths(&self) -> String {
        self.0
            .iter()
            .map(|s| match s {
                Source::Path(p) => p.to_string(),
                Source::Join(paths, _) => paths
                    .iter()
                    .map(JsonPath::as_str)
                    .collect::<Vec<_>>()
                    .join(" + "),
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

#[derive(Debug, Clone)]
struct Collector {
    list: Option<JsonPath>,
    object: Option<JsonPath>,
    key: Vec<JsonPath>,
    value: Vec<JsonPath>,
    /// The choices' list, and each choice's id and label, inside an entry.
    options: Option<(JsonPath, JsonPath, JsonPath)>,
}

/// How turns are read from a document: the inline `[sources.mapping.transcript]`, or the
/// answer of a platform's conversation API (`[sources.conversation]`).
#[derive(Debug, Clone)]
pub struct TurnReader {
    list: JsonPath,
    /// A single message read before the list (Intercom keeps the opening one in `source`).
    first: Option<JsonPath>,
    role: Vec<JsonPath>,
    text: Vec<JsonPath>,
    at: Vec<JsonPath>,
    /// The texts are HTML: tags are dropped and entities decoded.
    html: bool,
}

/// Where a [`TurnReader`] reads, as written; each path is parsed by [`TurnReader::compile`].
#[derive(Debug, Clone, Copy)]
pub struct TurnPaths<'a> {
    pub list: &'a str,
    pub first: Option<&'a str>,
    pub role: &'a [String],
    pub text: &'a [String],
    pub at: &'a [String],
    pub html: bool,
}

/// A checked mapping, its paths parsed.
#[derive(Debug, Clone)]
pub struct Mapping {
    event: Option<JsonPath>,
    lead_events: BTreeMap<String, EventKind>,
    kind: EventKind,
    event_id: Option<Rule>,
    timestamp: Option<Rule>,
    fields: Vec<(String, Rule)>,
    collectors: Vec<Collector>,
    transcript: Option<TurnReader>,
    without_contact: WithoutContact,
    html: Vec<String>,
    activity: Option<ActivityMapping>,
}

/// A checked `[mapping.activity]`.
#[derive(Debug, Clone)]
struct ActivityMapping {
    /// Its own event path; else the mapping's.
    event: Option<JsonPath>,
    events: BTreeMap<String, (ActivityKind, Option<JsonPath>)>,
    statuses: BTreeMap<String, ActivityKind>,
    lead_id: Option<Rule>,
    email: Option<Rule>,
    at: Option<Rule>,
    by: Option<Rule>,
    detail: Option<Rule>,
    key: Option<Rule>,
    automated: Vec<(JsonPath, Vec<String>)>,
}

/// A configuration mistake: the mapping key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct MappingConfigError {
    pub key: String,
    pub message: String,
}

fn paths(key: &str, texts: &[String]) -> Result<Vec<JsonPath>, MappingConfigError> {
    texts
        .iter()
        .map(|t| {
            JsonPath::parse(t).map_err(|e: PathError| MappingConfigError {
                key: key.to_owned(),
                message: e.to_string(),
            })
        })
        .collect()
}

fn rule(key: &str, rule: &FieldRule) -> Result<Rule, MappingConfigError> {
    let sources = match rule {
        FieldRule::One(source) => std::slice::from_ref(source),
        FieldRule::FirstOf(list) => list.as_slice(),
    };
    let compiled = sources
        .iter()
        .map(|source| {
            Ok(match source {
                ValueSource::Path(path) => {
                    Source::Path(paths(key, std::slice::from_ref(path))?.remove(0))
                }
                ValueSource::Join { join, separator } => {
                    if join.is_empty() {
                        return Err(MappingConfigError {
                            key: key.to_owned(),
                            message: "join names no path".into(),
                        });
                    }
                    Source::Join(paths(key, join)?, separator.clone())
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if compiled.is_empty() {
        return Err(MappingConfigError {
            key: key.to_owned(),
            message: "names no path".into(),
        });
    }
    Ok(Rule(compiled))
}

impl MappingConfig {
    /// Parses every path and checks the parts fit together; `key` names the mapping
    /// (`sources[2].mapping`) in errors.
    pub fn compile(&self, key: &str) -> Result<Mapping, MappingConfigError> {
        let err = |sub: &str, message: &str| MappingConfigError {
            key: format!("{key}.{sub}"),
            message: message.to_owned(),
        };
        let event = match &self.event {
            Some(path) => {
                Some(paths(&format!("{key}.event"), std::slice::from_ref(path))?.remove(0))
            }
            None => None,
        };
        // With `event` set and no lead events, a mapping with an activity section takes no
        // leads at all (a CRM's activity feed): it needs no lead fields.
        let activity_only =
            event.is_some() && self.lead_events.is_empty() && self.activity.is_some();
        match (&event, self.lead_events.is_empty(), self.kind) {
            (Some(_), true, _) if !activity_only => {
                return Err(err(
                    "lead_events",
                    "event is set, so list the event names that are leads (or the activity \
                     events in [activity])",
                ))
            }
            (Some(_), false, Some(_)) => {
                return Err(err(
                    "kind",
                    "with event set, each lead event names its kind in lead_events",
                ))
            }
            (None, false, _) => {
                return Err(err(
                    "event",
                    "lead_events needs event: the path of the event name",
                ))
            }
            _ => {}
        }
        if let Some(unknown) = self
            .html
            .iter()
            .find(|f| !LEAD_FIELDS.contains(&f.as_str()) && f.as_str() != "transcript")
        {
            return Err(err(
                "html",
                &format!("{unknown:?} is not a lead field or transcript"),
            ));
        }
        let fields = self
            .fields
            .iter()
            .map(|(name, r)| Ok((name.clone(), rule(&format!("{key}.fields.{name}"), r)?)))
            .collect::<Result<Vec<_>, MappingConfigError>>()?;
        if !activity_only
            && !self.fields.contains_key("email")
            && !self.fields.contains_key("phone")
        {
            return Err(err(
                "fields",
                "map at least email or phone: a lead needs a way to reach the prospect",
            ));
        }
        let mut collectors = Vec::new();
        for (n, c) in self.form_fields.iter().enumerate() {
            let here = format!("{key}.form_fields[{n}]");
            let single = |p: &Option<String>,
                          k: &str|
             -> Result<Option<JsonPath>, MappingConfigError> {
                p.as_ref()
                    .map(|p| Ok(paths(&format!("{here}.{k}"), std::slice::from_ref(p))?.remove(0)))
                    .transpose()
            };
            let collector = Collector {
                list: single(&c.list, "list")?,
                object: single(&c.object, "object")?,
                key: paths(&format!("{here}.key"), &c.key)?,
                value: paths(&format!("{here}.value"), &c.value)?,
                options: match &c.options {
                    Some(o) => {
                        let at = format!("{here}.options");
                        let mut found =
                            paths(&at, &[o.list.clone(), o.id.clone(), o.text.clone()])?;
                        let text = found.pop().expect("three paths");
                        let id = found.pop().expect("three paths");
                        let list = found.pop().expect("three paths");
                        Some((list, id, text))
                    }
                    None => None,
                },
            };
            match (&collector.list, &collector.object) {
                (Some(_), None) if collector.key.is_empty() => {
                    return Err(MappingConfigError {
                        key: format!("{here}.key"),
                        message: "a list's entries need key: where each entry's name is".into(),
                    })
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(MappingConfigError {
                        key: here,
                        message: "set exactly one of list or object".into(),
                    })
                }
            }
            collectors.push(collector);
        }
        let transcript = match &self.transcript {
            Some(t) => Some(TurnReader::compile(
                &format!("{key}.transcript"),
                TurnPaths {
                    list: &t.list,
                    first: None,
                    role: &t.role,
                    text: &t.text,
                    at: &[],
                    html: false,
                },
            )?),
            None => None,
        };
        let activity = self
            .activity
            .as_ref()
            .map(|a| {
                let email = self.fields.get("email");
                a.compile(&format!("{key}.activity"), event.is_some(), email)
            })
            .transpose()?;
        Ok(Mapping {
            event,
            lead_events: self.lead_events.clone(),
            kind: self.kind.unwrap_or(EventKind::LeadCapture),
            event_id: self
                .event_id
                .as_ref()
                .map(|r| rule(&format!("{key}.event_id"), r))
                .transpose()?,
            timestamp: self
                .timestamp
                .as_ref()
                .map(|r| rule(&format!("{key}.timestamp"), r))
                .transpose()?,
            fields,
            collectors,
            transcript,
            without_contact: self.without_contact,
            html: self.html.clone(),
            activity,
        })
    }
}

/// An activity kind by name, or an error listing the names there are.
fn activity_kind(key: &str, name: &str) -> Result<ActivityKind, MappingConfigError> {
    ActivityKind::parse(name).ok_or_else(|| MappingConfigError {
        key: key.to_owned(),
        message: format!(
            "{name:?} is not an activity kind; the kinds are {}",
            ActivityKind::ALL_NAMES.join(", ")
        ),
    })
}

impl ActivityMappingConfig {
    /// Parses every path and kind; `has_event` says whether the mapping has an event path to
    /// fall back on, `lead_email` is the lead's `email` rule (the default for `email`).
    fn compile(
        &self,
        key: &str,
        has_event: bool,
        lead_email: Option<&FieldRule>,
    ) -> Result<ActivityMapping, MappingConfigError> {
        let one = |sub: &str, path: &str| -> Result<JsonPath, MappingConfigError> {
            Ok(paths(&format!("{key}.{sub}"), &[path.to_owned()])?.remove(0))
        };
        let event = self.event.as_deref().map(|p| one("event", p)).transpose()?;
        if event.is_none() && !has_event {
            return Err(MappingConfigError {
                key: format!("{key}.event"),
                message: "the mapping has no event path: name where the activity's event name is"
                    .into(),
            });
        }
        if self.events.is_empty() {
            return Err(MappingConfigError {
                key: format!("{key}.events"),
                message: "lists no event: name each platform event that is activity, with its kind"
                    .into(),
            });
        }
        let mut events = BTreeMap::new();
        for (name, written) in &self.events {
            let here = format!("{key}.events.{name}");
            let (kind, when) = match written {
                ActivityEventConfig::Kind(kind) => (activity_kind(&here, kind)?, None),
                ActivityEventConfig::When { kind, when } => (
                    activity_kind(&format!("{here}.kind"), kind)?,
                    Some(paths(&format!("{here}.when"), std::slice::from_ref(when))?.remove(0)),
                ),
            };
            events.insert(name.clone(), (kind, when));
        }
        let statuses = self
            .statuses
            .iter()
            .map(|(value, kind)| {
                Ok((
                    value.clone(),
                    activity_kind(&format!("{key}.statuses.{value}"), kind)?,
                ))
            })
            .collect::<Result<BTreeMap<_, _>, MappingConfigError>>()?;
        let optional = |sub: &str, r: Option<&FieldRule>| {
            r.map(|r| rule(&format!("{key}.{sub}"), r)).transpose()
        };
        let automated = self
            .automated
            .iter()
            .enumerate()
            .map(|(n, c)| {
                if c.values.is_empty() {
                    return Err(MappingConfigError {
                        key: format!("{key}.automated[{n}].values"),
                        message: "lists no value: which texts at path mean a machine sent it"
                            .into(),
                    });
                }
                Ok((
                    one(&format!("automated[{n}].path"), &c.path)?,
                    c.values.clone(),
                ))
            })
            .collect::<Result<Vec<_>, MappingConfigError>>()?;
        Ok(ActivityMapping {
            event,
            events,
            statuses,
            lead_id: optional("lead_id", self.lead_id.as_ref())?,
            email: optional("email", self.email.as_ref().or(lead_email))?,
            at: optional("at", self.at.as_ref())?,
            by: optional("by", self.by.as_ref())?,
            detail: optional("detail", self.detail.as_ref())?,
            key: optional("key", self.key.as_ref())?,
            automated,
        })
    }
}

/// `text` cut to at most `max` characters.
fn cut(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_owned(),
        None => text,
    }
}

impl ActivityMapping {
    /// The activity `payload` is, if the mapping lists its event as one: `Ok(None)` for an
    /// event it does not list (the lead mapping decides), `Err(name)` for one named at the
    /// activity's own event path that it does not list (ignored).
    fn read(
        &self,
        payload: &Value,
        mapping_event: Option<&JsonPath>,
    ) -> Result<Option<MappedActivity>, String> {
        let Some(path) = self.event.as_ref().or(mapping_event) else {
            return Ok(None);
        };
        let Some(name) = path.text(payload) else {
            return Ok(None);
        };
        let Some((kind, when)) = self.events.get(&name) else {
            return if self.event.is_some() {
                Err(name)
            } else {
                Ok(None)
            };
        };
        if when
            .as_ref()
            .is_some_and(|w| w.find(payload).is_none_or(|v| matches!(v, Value::Null)))
        {
            return Err(name);
        }
        let text = |r: &Option<Rule>| r.as_ref().and_then(|r| r.text(payload));
        // Too long to be an id or an address: not one (it cannot match, and is not kept).
        let id = |r: &Option<Rule>| text(r).filter(|t| t.chars().count() <= MAX_ACTIVITY_ID);
        let detail = text(&self.detail).map(|t| cut(t, MAX_ACTIVITY_TEXT));
        let kind = match (kind, &detail) {
            (ActivityKind::StatusChanged, Some(detail)) => {
                self.statuses.get(detail).copied().unwrap_or(*kind)
            }
            _ => *kind,
        };
        let automated = self
            .automated
            .iter()
            .any(|(path, values)| path.text(payload).is_some_and(|t| values.contains(&t)));
        Ok(Some(MappedActivity {
            event: cut(name, MAX_ACTIVITY_TEXT),
            kind,
            lead_id: id(&self.lead_id),
            email: id(&self.email),
            at: text(&self.at).and_then(|t| parse_time(&t)),
            by: text(&self.by).map(|t| cut(t, MAX_ACTIVITY_TEXT)),
            detail,
            key: id(&self.key),
            automated,
        }))
    }
}

impl Mapping {
    /// Maps a JSON body. Never panics, whatever the JSON.
    pub fn apply(&self, body: &[u8]) -> Result<Mapped, MappingError> {
        let payload: Value = serde_json::from_slice(body).map_err(|e| MappingError {
            message: format!("body is not valid JSON: {e}"),
            path: String::new(),
        })?;
        self.apply_value(&payload)
    }

    pub fn apply_value(&self, payload: &Value) -> Result<Mapped, MappingError> {
        if let Some(activity) = &self.activity {
            match activity.read(payload, self.event.as_ref()) {
                Ok(Some(activity)) => {
                    let also_lead = self
                        .event
                        .as_ref()
                        .and_then(|path| path.text(payload))
                        .is_some_and(|name| self.lead_events.contains_key(&name));
                    return Ok(Mapped::Activity {
                        activity: Box::new(activity),
                        also_lead,
                    });
                }
                Err(event) => return Ok(Mapped::Ignored { event }),
                Ok(None) => {}
            }
        }
        self.apply_lead_value(payload)
    }

    /// Maps a JSON body as a lead only, whatever activity the mapping lists: an event that
    /// is both (a booking) and found no lead for its activity.
    pub fn apply_lead(&self, body: &[u8]) -> Result<Mapped, MappingError> {
        let payload: Value = serde_json::from_slice(body).map_err(|e| MappingError {
            message: format!("body is not valid JSON: {e}"),
            path: String::new(),
        })?;
        self.apply_lead_value(&payload)
    }

    fn apply_lead_value(&self, payload: &Value) -> Result<Mapped, MappingError> {
        let kind = match &self.event {
            None => self.kind,
            Some(path) => {
                let name = path.text(payload).ok_or_else(|| MappingError {
                    message: format!("missing the event name at {path}"),
                    path: path.to_string(),
                })?;
                match self.lead_events.get(&name) {
                    Some(kind) => *kind,
                    None => return Ok(Mapped::Ignored { event: name }),
                }
            }
        };
        let mut capture = CaptureEvent {
            event: Some(kind),
            ..CaptureEvent::default()
        };
        for collector in &self.collectors {
            collector.collect(payload, &mut capture.form_fields);
        }
        for (name, rule) in &self.fields {
            let slot = match name.as_str() {
                "email" => &mut capture.captured_email,
                "name" => &mut capture.name,
                "company" => &mut capture.company,
                "phone" => &mut capture.phone,
                "job_title" => &mut capture.job_title,
                "question" => &mut capture.trigger_query,
                "page_url" => &mut capture.metadata.source_url,
                "ip" => &mut capture.metadata.ip_address,
                "user_agent" => &mut capture.metadata.user_agent,
                "transcript_url" => &mut capture.conversation_transcript_url,
                "conversation_id" => &mut capture.conversation_id,
                "visitor_id" => &mut capture.visitor_id,
                form_field => {
                    if let Some(value) = rule.value(payload) {
                        capture.form_fields.insert(form_field.to_owned(), value);
                    }
                    continue;
                }
            };
            *slot = rule.text(payload);
            if self.html.iter().any(|f| f == name) {
                *slot = slot.as_deref().map(html_text).filter(|t| !t.is_empty());
            }
        }
        if capture.captured_email.is_none() && capture.phone.is_none() {
            if self.without_contact == WithoutContact::Ignore {
                let event = match &self.event {
                    Some(path) => path.text(payload).unwrap_or_default(),
                    None => kind.as_str().to_owned(),
                };
                return Ok(Mapped::Ignored {
                    event: format!("{event} (no e-mail or phone yet)"),
                });
            }
            let tried: Vec<String> = ["email", "phone"]
                .iter()
                .filter_map(|f| self.fields.iter().find(|(n, _)| n == f))
                .map(|(n, r)| format!("{n} at {}", r.paths()))
                .collect();
            let path = self
                .fields
                .iter()
                .find(|(n, _)| n == "email" || n == "phone")
                .map(|(_, r)| r.paths())
                .unwrap_or_default();
            return Err(MappingError {
                message: format!(
                    "no way to reach the prospect: found no {}",
                    tried.join(", nor ")
                ),
                path,
            });
        }
        if let Some(transcript) = &self.transcript {
            capture.transcript = transcript.turns(payload);
            if self.html.iter().any(|f| f == "transcript") {
                for turn in &mut capture.transcript {
                    turn.text = html_text(&turn.text);
                }
            }
        }
        capture.timestamp = self
            .timestamp
            .as_ref()
            .and_then(|r| r.text(payload))
            .and_then(|t| parse_time(&t));
        let event_id = self.event_id.as_ref().and_then(|r| r.text(payload));
        Ok(Mapped::Lead {
            capture: Box::new(capture),
            event_id,
        })
    }
}

impl Collector {
    /// `value` with each option id it holds replaced by that option's label (ids the entry
    /// does not list stay as they are).
    fn labelled(&self, entry: &Value, value: Value) -> Value {
        let Some((list, id, text)) = &self.options else {
            return value;
        };
        let Some(Value::Array(options)) = list.find(entry) else {
            return value;
        };
        let label = |v: Value| -> Value {
            let Some(wanted) = json_path::text_of(&v) else {
                return v;
            };
            options
                .iter()
                .find(|o| id.text(o).as_deref() == Some(wanted.as_str()))
                .and_then(|o| text.text(o))
                .map_or(v, Value::String)
        };
        match value {
            Value::Array(items) => Value::Array(items.into_iter().map(label).collect()),
            one => label(one),
        }
    }

    fn collect(&self, payload: &Value, into: &mut BTreeMap<String, Value>) {
        let pick = |entry: &Value| -> Option<Value> {
            if self.value.is_empty() {
                return Some(entry.clone());
            }
            let value = self
                .value
                .iter()
                .filter_map(|p| p.find(entry))
                .find(|v| !matches!(v, Value::Null))
                .cloned()?;
            Some(self.labelled(entry, value))
        };
        if let Some(Value::Array(items)) = self.list.as_ref().and_then(|p| p.find(payload)) {
            for item in items {
                let Some(name) = self.key.iter().find_map(|k| k.text(item)) else {
                    continue;
                };
                if let Some(value) = pick(item) {
                    into.insert(name, value);
                }
            }
        }
        if let Some(Value::Object(members)) = self.object.as_ref().and_then(|p| p.find(payload)) {
            for (name, entry) in members {
                if let Some(value) = pick(entry) {
                    into.insert(name.clone(), value);
                }
            }
        }
    }
}

impl TurnReader {
    /// Parses every path; `key` names the section (`sources[0].conversation`) in errors.
    pub fn compile(key: &str, written: TurnPaths<'_>) -> Result<TurnReader, MappingConfigError> {
        let one = |sub: &str, path: &str| -> Result<JsonPath, MappingConfigError> {
            Ok(paths(&format!("{key}.{sub}"), &[path.to_owned()])?.remove(0))
        };
        if written.text.is_empty() {
            return Err(MappingConfigError {
                key: format!("{key}.text"),
                message: "names no path: where each message's text is".into(),
            });
        }
        Ok(TurnReader {
            list: one("list", written.list)?,
            first: written.first.map(|p| one("first", p)).transpose()?,
            role: paths(&format!("{key}.role"), written.role)?,
            text: paths(&format!("{key}.text"), written.text)?,
            at: paths(&format!("{key}.at"), written.at)?,
            html: written.html,
        })
    }

    /// The turns in `document`: the `first` message, then each entry of the list. An entry
    /// without text (an assignment, a note with only an attachment) is left out; one without
    /// a role is `unknown`.
    pub fn turns(&self, document: &Value) -> Vec<Turn> {
        let first = self.first.as_ref().and_then(|p| p.find(document));
        let listed = match self.list.find(document) {
            Some(Value::Array(items)) => items.as_slice(),
            _ => &[],
        };
        first
            .into_iter()
            .chain(listed)
            .filter_map(|item| self.turn(item))
            .collect()
    }

    fn turn(&self, item: &Value) -> Option<Turn> {
        let raw = self.text.iter().find_map(|p| p.text(item))?;
        let text = if self.html { html_text(&raw) } else { raw };
        if text.is_empty() {
            return None;
        }
        let role = self
            .role
            .iter()
            .find_map(|p| p.text(item))
            .unwrap_or_else(|| "unknown".into());
        let at = self
            .at
            .iter()
            .find_map(|p| p.text(item))
            .and_then(|t| parse_time(&t));
        Some(Turn { role, text, at })
    }
}

/// The text of a chat message written in HTML (Intercom's and Drift's bodies): tags dropped,
/// a paragraph or line break becoming a new line, entities decoded, runs of spaces made one.
/// A `<` that does not open a tag ("a < b") is kept as text.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let opens_tag = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!');
        match after.find('>').filter(|_| opens_tag) {
            Some(close) => {
                let name: String = after[..close]
                    .trim_start_matches('/')
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .to_ascii_lowercase();
                if matches!(
                    name.as_str(),
                    "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "blockquote"
                ) {
                    out.push('\n');
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    let decoded = html_escape::decode_html_entities(&out);
    decoded
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// RFC 3339, or a Unix time in seconds (fractions too: `1768020119.482913`) or milliseconds
/// (told apart by size).
fn parse_time(text: &str) -> Option<Timestamp> {
    if let Ok(n) = text.parse::<i64>() {
        // Seconds reach 10^11 only in the year 5138; anything larger is milliseconds.
        return if n.abs() >= 100_000_000_000 {
            Timestamp::from_millisecond(n).ok()
        } else {
            Timestamp::from_second(n).ok()
        };
    }
    if let Some((whole, fraction)) = text.split_once('.') {
        if let (Ok(seconds), true) = (
            whole.parse::<i64>(),
            !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit()),
        ) {
            // Nanoseconds from the first nine digits of the fraction.
            let digits: String = fraction
                .chars()
                .chain(std::iter::repeat('0'))
                .take(9)
                .collect();
            let nanos = digits.parse::<i32>().ok()?;
            return Timestamp::new(seconds, nanos).ok();
        }
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(toml_text: &str) -> Mapping {
        let config: MappingConfig = toml::from_str(toml_text).expect("valid toml");
        config.compile("mapping").expect("valid mapping")
    }

    fn lead(mapped: Mapped) -> (CaptureEvent, Option<String>) {
        match mapped {
            Mapped::Lead { capture, event_id } => (*capture, event_id),
            other => panic!("not a lead: {other:?}"),
        }
    }

    const FORM: &str = r#"
        event = "event_type"
        lead_events = { form_response = "lead_capture" }
        event_id = "event_id"
        timestamp = "form_response.submitted_at"
        [fields]
        email = ["form_response.answers[type=email].email", "form_response.hidden.email"]
        name = { join = ["form_response.answers[field.ref=first].text", "form_response.answers[field.ref=last].text"] }
        company = "form_response.answers[field.ref=company].text"
        country = "form_response.answers[field.ref=country].choice.label"
        [[form_fields]]
        list = "form_response.answers"
        key = ["field.ref"]
        value = ["text", "email", "number", "choice.label", "choices.labels"]
    "#;

    fn form_payload() -> Value {
        json!({
            "event_id": "01H",
            "event_type": "form_response",
            "form_response": {
                "submitted_at": "2026-11-26T09:00:00Z",
                "answers": [
                    {"type": "text", "text": "Ada", "field": {"ref": "first"}},
                    {"type": "text", "text": "Lovelace", "field": {"ref": "last"}},
                    {"type": "email", "email": "ada@acme.example", "field": {"ref": "work_email"}},
                    {"type": "text", "text": "Acme", "field": {"ref": "company"}},
                    {"type": "choice", "choice": {"label": "United Kingdom"}, "field": {"ref": "country"}},
                    {"type": "number", "number": 250, "field": {"ref": "seats"}},
                    {"type": "choices", "choices": {"labels": ["API", "SSO"]}, "field": {"ref": "needs"}}
                ]
            }
        })
    }

    #[test]
    fn a_form_response_becomes_a_capture_with_every_answer_kept() {
        let (capture, event_id) = lead(mapping(FORM).apply_value(&form_payload()).expect("maps"));
        assert_eq!(event_id.as_deref(), Some("01H"));
        assert_eq!(capture.event, Some(EventKind::LeadCapture));
        assert_eq!(capture.captured_email.as_deref(), Some("ada@acme.example"));
        assert_eq!(capture.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(capture.company.as_deref(), Some("Acme"));
        assert_eq!(
            capture.timestamp.map(|t| t.as_second()),
            Some(1_795_683_600)
        );
        assert_eq!(capture.form_fields["country"], json!("United Kingdom"));
        assert_eq!(capture.form_fields["seats"], json!(250));
        assert_eq!(capture.form_fields["needs"], json!(["API", "SSO"]));
        assert_eq!(capture.form_fields["work_email"], json!("ada@acme.example"));
    }

    #[test]
    fn other_events_are_ignored_and_a_missing_contact_names_its_paths() {
        let m = mapping(FORM);
        let mut other = form_payload();
        other["event_type"] = json!("form_deleted");
        assert_eq!(
            m.apply_value(&other),
            Ok(Mapped::Ignored {
                event: "form_deleted".into()
            })
        );
        let error = m
            .apply_value(&json!({"form_response": {}}))
            .expect_err("no event");
        assert_eq!(error.path, "event_type");
        let error = m
            .apply_value(&json!({"event_type": "form_response", "form_response": {"answers": []}}))
            .expect_err("no e-mail");
        assert!(
            error
                .message
                .contains("form_response.answers[type=email].email or form_response.hidden.email"),
            "{error}"
        );
        assert!(m.apply(b"{not json").is_err());
    }

    #[test]
    fn mistakes_in_a_mapping_are_named_by_key() {
        let bad = |text: &str| {
            toml::from_str::<MappingConfig>(text)
                .expect("toml")
                .compile("sources[1].mapping")
                .expect_err(text)
                .to_string()
        };
        assert!(bad("[fields]\nname = \"a\"").contains("map at least email or phone"));
        assert!(bad("[fields]\nemail = \"a..b\"").starts_with("sources[1].mapping.fields.email: "));
        assert!(bad("event = \"type\"\n[fields]\nemail = \"a\"").contains("lead_events"));
        assert!(bad("[fields]\nemail = []").contains("names no path"));
        assert!(bad(
            "[fields]\nemail = \"a\"\n[[form_fields]]\nlist = \"x\"\nobject = \"y\"\nkey = [\"k\"]"
        )
        .contains("exactly one of list or object"));
    }

    #[test]
    fn chosen_option_ids_become_their_labels() {
        let m = mapping(
            r#"
            [fields]
            email = "data.fields[type=INPUT_EMAIL].value"
            [[form_fields]]
            list = "data.fields"
            key = ["label"]
            value = ["value"]
            options = { list = "options" }
            "#,
        );
        let (capture, _) = lead(
            m.apply_value(&json!({"data": {"fields": [
                {"label": "Email", "type": "INPUT_EMAIL", "value": "ada@acme.example"},
                {"label": "Company size", "type": "MULTIPLE_CHOICE", "value": ["b"],
                 "options": [{"id": "a", "text": "1-10"}, {"id": "b", "text": "11-50"}]},
                {"label": "Needs", "type": "CHECKBOXES", "value": ["x", "unknown"],
                 "options": [{"id": "x", "text": "SSO"}]},
                {"label": "Country", "type": "DROPDOWN", "value": "gb",
                 "options": [{"id": "gb", "text": "United Kingdom"}]}
            ]}}))
            .expect("maps"),
        );
        assert_eq!(capture.form_fields["Company size"], json!(["11-50"]));
        assert_eq!(capture.form_fields["Needs"], json!(["SSO", "unknown"]));
        assert_eq!(capture.form_fields["Country"], json!("United Kingdom"));
        assert_eq!(capture.form_fields["Email"], json!("ada@acme.example"));
    }

    #[test]
    fn html_fields_arrive_as_text() {
        assert_eq!(
            html_text("<p>Hi, do you offer <b>volume</b> pricing?</p><p>50 seats &amp; SSO</p>"),
            "Hi, do you offer volume pricing?\n50 seats & SSO"
        );
        assert_eq!(html_text("a<br>b <br/> c"), "a\nb\nc");
        assert_eq!(html_text("2 < 3 and &lt;script&gt;"), "2 < 3 and <script>");
        assert_eq!(html_text("<p>   </p>"), "");
        let m = mapping("html = [\"question\"]\n[fields]\nemail = \"e\"\nquestion = \"q\"");
        let (capture, _) = lead(
            m.apply_value(&json!({"e": "ada@acme.example", "q": "<p>Pricing &amp; SSO?</p>"}))
                .expect("maps"),
        );
        assert_eq!(capture.trigger_query.as_deref(), Some("Pricing & SSO?"));
        let error =
            toml::from_str::<MappingConfig>("html = [\"qestion\"]\n[fields]\nemail = \"e\"")
                .expect("toml")
                .compile("mapping")
                .expect_err("unknown field");
        assert!(
            error
                .to_string()
                .contains("\"qestion\" is not a lead field"),
            "{error}"
        );
    }

    #[test]
    fn times_read_as_rfc3339_seconds_fractions_or_milliseconds() {
        for (text, millis) in [
            ("2026-11-26T09:00:00Z", 1_795_683_600_000),
            ("1795683600", 1_795_683_600_000),
            ("1795683600123", 1_795_683_600_123),
            ("1795683600.482913", 1_795_683_600_482),
            ("1795683600.5", 1_795_683_600_500),
        ] {
            assert_eq!(
                parse_time(text).map(|t| t.as_millisecond()),
                Some(millis),
                "{text}"
            );
        }
        for bad in ["soon", "1795683600.", "1795683600.5x", ".5"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_chat_message_without_contact_can_be_ignored_instead_of_refused() {
        let m = mapping("event = \"type\"\nlead_events = { message = \"lead_capture\" }\nwithout_contact = \"ignore\"\n[fields]\nemail = \"email\"");
        assert_eq!(
            m.apply_value(&json!({"type": "message"})),
            Ok(Mapped::Ignored {
                event: "message (no e-mail or phone yet)".into()
            })
        );
        assert!(matches!(
            m.apply_value(&json!({"type": "message", "email": "ada@acme.example"})),
            Ok(Mapped::Lead { .. })
        ));
    }

    #[test]
    fn transcripts_and_object_fields() {
        let m = mapping(
            r#"
            [fields]
            email = "data.email"
            [[form_fields]]
            object = "data.responses"
            value = ["value"]
            [transcript]
            list = "data.messages"
            role = ["author.type"]
            text = ["body"]
            "#,
        );
        let (capture, _) = lead(
            m.apply_value(&json!({"data": {
                "email": "ada@acme.example",
                "responses": {"size": {"label": "Size", "value": "51-200"}, "note": {"label": "x"}},
                "messages": [{"author": {"type": "user"}, "body": "Pricing?"}, {"body": ""}]
            }}))
            .expect("maps"),
        );
        assert_eq!(capture.form_fields.get("size"), Some(&json!("51-200")));
        assert!(!capture.form_fields.contains_key("note"));
        assert_eq!(capture.transcript.len(), 1);
        assert_eq!(capture.transcript[0].role, "user");
        assert_eq!(capture.transcript[0].text, "Pricing?");
    }
    const CRM: &str = r#"
        event = "type"
        lead_events = { "booking.created" = "lead_capture" }
        [fields]
        email = "invitee.email"
        [activity]
        lead_id = "tracking.lead"
        at = "at"
        by = "owner.name"
        detail = "status"
        key = "id"
        automated = [{ path = "author.type", values = ["bot", "operator"] }]
        [activity.events]
        "booking.created" = "meeting_booked"
        "status.changed" = "status_changed"
        "no_show.updated" = { kind = "meeting_no_show", when = "attendees[no_show=true]" }
        [activity.statuses]
        closedwon = "won"
    "#;

    fn activity(mapped: Mapped) -> (MappedActivity, bool) {
        match mapped {
            Mapped::Activity {
                activity,
                also_lead,
            } => (*activity, also_lead),
            other => panic!("not an activity: {other:?}"),
        }
    }

    #[test]
    fn activity_events_carry_their_kind_lead_id_email_time_actor_and_key() {
        let m = mapping(CRM);
        let (booked, also_lead) = activity(
            m.apply_value(&json!({"type": "booking.created", "id": "b1",
                "invitee": {"email": "ada@acme.example"}, "tracking": {"lead": "lead-1"},
                "at": "2026-11-23T10:05:00Z", "owner": {"name": "Bruno"}}))
                .expect("maps"),
        );
        assert!(also_lead, "a booking is a lead event too");
        assert_eq!(booked.kind, ActivityKind::MeetingBooked);
        assert_eq!(booked.lead_id.as_deref(), Some("lead-1"));
        // The lead's e-mail rule, since the activity names none.
        assert_eq!(booked.email.as_deref(), Some("ada@acme.example"));
        assert_eq!(booked.at, "2026-11-23T10:05:00Z".parse().ok());
        assert_eq!(booked.by.as_deref(), Some("Bruno"));
        assert_eq!(booked.key.as_deref(), Some("b1"));
        assert!(!booked.automated);
        // As a lead only, the same payload is the lead it always was.
        assert!(matches!(
            m.apply_lead(
                br#"{"type": "booking.created", "invitee": {"email": "ada@acme.example"}}"#
            ),
            Ok(Mapped::Lead { .. })
        ));

        let (won, also_lead) = activity(
            m.apply_value(&json!({"type": "status.changed", "status": "closedwon"}))
                .expect("maps"),
        );
        assert!(!also_lead);
        assert_eq!(won.kind, ActivityKind::Closed(crate::model::Outcome::Won));
        let (changed, _) = activity(
            m.apply_value(&json!({"type": "status.changed", "status": "Working",
                "author": {"type": "bot"}}))
                .expect("maps"),
        );
        assert_eq!(changed.kind, ActivityKind::StatusChanged);
        assert_eq!(changed.detail.as_deref(), Some("Working"));
        assert!(changed.automated);

        let (no_show, _) = activity(
            m.apply_value(&json!({"type": "no_show.updated",
                "attendees": [{"email": "x@y.example", "no_show": false}, {"no_show": true}]}))
                .expect("maps"),
        );
        assert_eq!(no_show.kind, ActivityKind::MeetingNoShow);
        // A no-show taken back is not activity.
        assert_eq!(
            m.apply_value(&json!({"type": "no_show.updated", "attendees": [{"no_show": false}]})),
            Ok(Mapped::Ignored {
                event: "no_show.updated".into()
            })
        );
        // An event listed nowhere is still ignored.
        assert_eq!(
            m.apply_value(&json!({"type": "booking.moved"})),
            Ok(Mapped::Ignored {
                event: "booking.moved".into()
            })
        );
    }

    #[test]
    fn activity_texts_are_bounded() {
        let m = mapping(CRM);
        let long = "x".repeat(5_000);
        let (a, _) = activity(
            m.apply_value(
                &json!({"type": "status.changed", "status": long, "id": long,
                "tracking": {"lead": long}, "owner": {"name": long}}),
            )
            .expect("maps"),
        );
        assert_eq!(a.detail.map(|d| d.chars().count()), Some(MAX_ACTIVITY_TEXT));
        assert_eq!(a.by.map(|d| d.chars().count()), Some(MAX_ACTIVITY_TEXT));
        assert_eq!(a.key, None, "too long to be an id");
        assert_eq!(a.lead_id, None);
    }

    #[test]
    fn an_activity_feed_with_its_own_event_key_leaves_other_bodies_leads() {
        let m = mapping(
            r#"
            [fields]
            email = "email"
            [activity]
            event = "leadrelay_event"
            events = { call = "called" }
            "#,
        );
        assert!(matches!(
            m.apply_value(&json!({"email": "ada@acme.example"})),
            Ok(Mapped::Lead { .. })
        ));
        let (call, also_lead) = activity(
            m.apply_value(&json!({"email": "ada@acme.example", "leadrelay_event": "call"}))
                .expect("maps"),
        );
        assert_eq!((call.kind, also_lead), (ActivityKind::Called, false));
        assert_eq!(
            m.apply_value(&json!({"leadrelay_event": "note"})),
            Ok(Mapped::Ignored {
                event: "note".into()
            })
        );
        // An activity-only mapping needs no lead fields.
        let feed = mapping("event = \"activity\"\n[activity]\nevents = { call = \"called\" }");
        assert!(matches!(
            feed.apply_value(&json!({"activity": "call"})),
            Ok(Mapped::Activity { .. })
        ));
        assert_eq!(
            feed.apply_value(&json!({"activity": "lead"})),
            Ok(Mapped::Ignored {
                event: "lead".into()
            })
        );
    }

    #[test]
    fn activity_mistakes_are_named_by_key_listing_the_kinds() {
        let bad = |text: &str| {
            toml::from_str::<MappingConfig>(text)
                .expect("toml")
                .compile("sources[0].mapping")
                .expect_err(text)
                .to_string()
        };
        let unknown = bad("event = \"t\"\n[activity]\nevents = { x = \"meeting\" }");
        assert!(
            unknown.starts_with(
                "sources[0].mapping.activity.events.x: \"meeting\" is not an activity kind"
            ),
            "{unknown}"
        );
        assert!(
            unknown.contains(&ActivityKind::ALL_NAMES.join(", ")),
            "{unknown}"
        );
        let status = bad("event = \"t\"\n[activity]\nevents = { x = \"status_changed\" }\nstatuses = { closed = \"closed\" }");
        assert!(
            status.starts_with("sources[0].mapping.activity.statuses.closed: "),
            "{status}"
        );
        assert!(
            bad("[fields]\nemail = \"e\"\n[activity]\nevents = { x = \"called\" }")
                .starts_with("sources[0].mapping.activity.event: ")
        );
        assert!(bad("event = \"t\"\n[activity]\nevents = {}").contains("lists no event"));
        assert!(
            bad("event = \"t\"\n[activity]\nevents = { x = \"called\" }\nlead_id = \"a..b\"")
                .starts_with("sources[0].mapping.activity.lead_id: ")
        );
        assert!(bad("event = \"t\"\n[activity]\nevents = { x = \"called\" }\nautomated = [{ path = \"a\", values = [] }]")
            .contains("automated[0].values"));
        // Without an activity section, an event path with no lead events is still a mistake.
        assert!(bad("event = \"t\"\n[fields]\nemail = \"e\"").contains("lead_events"));
    }

    #[test]
    fn html_bodies_become_text() {
        assert_eq!(
            super::html_text("<p>Hi <b>there</b>,</p><p>a &lt; b &amp;&nbsp;c<br>next</p>"),
            "Hi there,\na < b & c\nnext"
        );
        assert_eq!(super::html_text("1 < 2 and 3 > 2"), "1 < 2 and 3 > 2");
        assert_eq!(super::html_text("<p>  </p>"), "");
        assert_eq!(super::html_text("unclosed <a href"), "unclosed <a href");
    }
}
