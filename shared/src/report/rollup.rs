//! Report records: what the figures need of one lead, measured once. The CLI's report and the
//! console's dashboard both compute from them (facts → [`Records`] → figures), and a store
//! may keep them in hourly buckets (one per UTC capture hour, see
//! [`crate::ports::LeadStore::report_hours`]) so a dashboard over 100,000 leads reads a few
//! thousand small rows instead of 100,000 JSON documents.
//!
//! A record holds both clocks' durations (the working-hours ones measured with the owner's
//! schedule as configured when the record was built: see [`Directory::fingerprint`]) and the
//! SLA deadline, so Met / Missed / Pending is decided when the figures are read, with `now`.
//! Strings (owners, sources, rules, pages) are interned per [`Records`].

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::facts::LeadFacts;
use super::figures::{
    bucket, BucketRow, Dimension, Directory, Group, Handoff, Hours, Params, RuleAccuracy,
    SpeedToLead, Spread, TierSla, BUCKETS,
};
use crate::config::HANDOFF_FIELDS;
use crate::model::{Outcome, Owner};

/// The bucket layout's version: the first byte of every encoded bucket, and part of the
/// fingerprint, so a bucket written by another version is rebuilt rather than misread.
pub const RECORDS_VERSION: u8 = 1;

/// One UTC capture hour, in milliseconds.
const HOUR_MS: i64 = 3_600_000;

/// Why stored records could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("report records of layout version {found}, this version reads {RECORDS_VERSION}")]
    Version { found: u8 },
    #[error("report records unreadable")]
    Decode(#[source] postcard::Error),
    #[error("report records could not be encoded")]
    Encode(#[source] postcard::Error),
}

/// The kind of a holder of a lead, as [`Owner`] names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HolderKind {
    Rep,
    Pool,
    Queue,
}

impl HolderKind {
    fn prefix(self) -> &'static str {
        match self {
            HolderKind::Rep => "rep",
            HolderKind::Pool => "pool",
            HolderKind::Queue => "queue",
        }
    }
}

/// A holder: its kind and its interned id.
pub type Holder = (HolderKind, u32);

/// A lead's SLA as its record keeps it: decided when it responded, else its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlaRecord {
    /// No tier, no SLA, or never routed.
    None,
    Met,
    Missed,
    /// Not responded: pending until the deadline (nanoseconds since the epoch), missed after.
    Open(i128),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlaStatus {
    Met,
    Missed,
    Pending,
    None,
}

impl SlaRecord {
    fn status(self, now_ns: i128) -> SlaStatus {
        match self {
            SlaRecord::None => SlaStatus::None,
            SlaRecord::Met => SlaStatus::Met,
            SlaRecord::Missed => SlaStatus::Missed,
            SlaRecord::Open(deadline) if now_ns > deadline => SlaStatus::Missed,
            SlaRecord::Open(_) => SlaStatus::Pending,
        }
    }
}

/// The five measured durations, in whole seconds: system, acknowledgement, human, first
/// response, time to meeting (the order of [`Group`]'s spreads).
pub type Durations = [Option<i64>; 5];
const FIRST_RESPONSE: usize = 3;

// Bits of `ReportRecord::flags`.
const NOTIFIED: u8 = 1;
const CLAIMED: u8 = 1 << 1;
const CONTACTED: u8 = 1 << 2;
const BOOKED: u8 = 1 << 3;
const HELD: u8 = 1 << 4;
const ESCALATED: u8 = 1 << 5;
const REASSIGNED: u8 = 1 << 6;
const MISROUTED: u8 = 1 << 7;

/// What the figures, the viewer scope and the filters need of one lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRecord {
    /// Capture, in nanoseconds since the epoch (a lead without one is never recorded).
    pub captured: i128,
    pub merged: bool,
    pub source: u32,
    /// The owner now.
    pub owner: Option<Holder>,
    /// The rep who claimed it.
    pub claimed_by: Option<u32>,
    /// Whom routing chose, where the console's access rules still count them as a holder: after
    /// an escalation, or while nobody claimed it (a claim overwrites the assignment).
    pub routed: Option<Holder>,
    pub rule: Option<u32>,
    /// The rules of its "not mine"s, each once.
    pub misroute_rules: Vec<u32>,
    pub page: Option<u32>,
    pub tier: Option<u8>,
    pub sla_minutes: Option<u32>,
    flags: u8,
    /// `Some(true)` won, `Some(false)` another outcome, `None` no known outcome.
    pub won: Option<bool>,
    pub sla: SlaRecord,
    pub wall: Durations,
    /// On the owner's working hours; `None` when the owner has no schedule (the wall clock's).
    pub working: Option<Durations>,
    /// Which of [`HANDOFF_FIELDS`] the alert could show, one bit each.
    pub handoff: u16,
    /// Handoff fields of the facts outside [`HANDOFF_FIELDS`], interned.
    pub handoff_other: Vec<u32>,
}

impl ReportRecord {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether it counts in the figures: not merged into another lead.
    pub fn counts(&self) -> bool {
        !self.merged
    }

    fn durations(&self, hours: Hours) -> &Durations {
        match (hours, &self.working) {
            (Hours::Working, Some(working)) => working,
            _ => &self.wall,
        }
    }

    /// Who held it, as far as its facts tell: the owner, the claimer, and whom routing chose
    /// (see [`ReportRecord::routed`]).
    pub fn holders(&self) -> impl Iterator<Item = Holder> + '_ {
        self.owner
            .into_iter()
            .chain(self.claimed_by.map(|rep| (HolderKind::Rep, rep)))
            .chain(self.routed)
    }
}

/// Interned strings.
#[derive(Debug, Clone, Default)]
pub struct Strings {
    list: Vec<String>,
    index: FxHashMap<String, u32>,
}

impl Strings {
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(id) = self.index.get(text) {
            return *id;
        }
        let id = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push(text.to_owned());
        self.index.insert(text.to_owned(), id);
        id
    }

    /// The id of `text` if any record names it.
    pub fn id(&self, text: &str) -> Option<u32> {
        self.index.get(text).copied()
    }

    pub fn get(&self, id: u32) -> &str {
        self.list.get(id as usize).map_or("", String::as_str)
    }

    fn from_list(list: Vec<String>) -> Strings {
        let index = list
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        Strings { list, index }
    }
}

/// Report records and the strings they intern.
#[derive(Debug, Clone, Default)]
pub struct Records {
    strings: Strings,
    records: Vec<ReportRecord>,
}

/// The encoded form: version byte, then strings and records (postcard).
#[derive(Serialize)]
struct EncodedRef<'a> {
    version: u8,
    strings: &'a [String],
    records: &'a [ReportRecord],
}

#[derive(Deserialize)]
struct Encoded {
    version: u8,
    strings: Vec<String>,
    records: Vec<ReportRecord>,
}

impl Records {
    /// The records of `facts`, in their order; facts without a capture time are left out
    /// (no window holds them). Working hours are measured with `directory`'s schedules.
    pub fn of(facts: &[LeadFacts], directory: &Directory) -> Records {
        let mut records = Records::default();
        records.records.reserve(facts.len());
        for f in facts {
            if let Some(record) = records.record_of(f, directory) {
                records.records.push(record);
            }
        }
        records
    }

    fn holder(&mut self, owner: &Owner) -> Holder {
        match owner {
            Owner::Rep(id) => (HolderKind::Rep, self.strings.intern(id)),
            Owner::Pool(id) => (HolderKind::Pool, self.strings.intern(id)),
            Owner::Queue(id) => (HolderKind::Queue, self.strings.intern(id)),
        }
    }

    fn record_of(&mut self, f: &LeadFacts, directory: &Directory) -> Option<ReportRecord> {
        let captured = f.captured_at?.as_nanosecond();
        let strings = &mut self.strings;
        let routed = f
            .routed_to
            .as_deref()
            .filter(|_| f.escalations > 0 || f.claimed_by.is_none())
            .and_then(|key| {
                let kind = match key.split_once(':')? {
                    ("rep", _) => HolderKind::Rep,
                    ("pool", _) => HolderKind::Pool,
                    ("queue", _) => HolderKind::Queue,
                    _ => return None,
                };
                Some((kind, key.split_once(':')?.1))
            })
            .map(|(kind, id)| (kind, strings.intern(id)));
        let claimed_by = f.claimed_by.as_deref().map(|rep| strings.intern(rep));
        let source = strings.intern(&f.source);
        let rule = f.rule.as_deref().map(|r| strings.intern(r));
        let page = f.page.as_deref().map(|p| strings.intern(p));
        let mut misroute_rules: Vec<u32> = f
            .misroutes
            .iter()
            .map(|m| strings.intern(&m.rule))
            .collect();
        misroute_rules.sort_unstable();
        misroute_rules.dedup();
        let mut handoff = 0u16;
        let mut handoff_other = Vec::new();
        for field in &f.handoff {
            match HANDOFF_FIELDS.iter().position(|known| known == field) {
                Some(bit) => handoff |= 1 << bit,
                None => handoff_other.push(strings.intern(field)),
            }
        }
        let owner = f.owner.as_ref().map(|o| self.holder(o));
        let schedule = f.owner.as_ref().and_then(|o| directory.schedule(o));
        let start = f.start();
        let spans = [
            (start, f.notified_at),
            (f.notified_at, f.claimed_at),
            (f.claimed_at.or(f.notified_at), f.first_touch_at),
            (start, f.first_touch_at),
            (start, f.meeting_booked_at),
        ];
        // A wall clock stepped back between two stamps would make a part negative: zero.
        let wall = spans.map(|(from, to)| {
            Some(
                to?.duration_since(from?)
                    .max(SignedDuration::ZERO)
                    .as_secs(),
            )
        });
        let working = schedule.map(|schedule| {
            spans.map(|(from, to)| Some(schedule.open_duration(from?, to?).as_secs()))
        });
        let sla = match (f.sla_deadline(), f.owner.is_some()) {
            (Some(deadline), true) => match f.responded_at() {
                Some(at) if at <= deadline => SlaRecord::Met,
                Some(_) => SlaRecord::Missed,
                None => SlaRecord::Open(deadline.as_nanosecond()),
            },
            _ => SlaRecord::None,
        };
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let flags = flag(f.notified_at.is_some(), NOTIFIED)
            | flag(f.claimed_at.is_some(), CLAIMED)
            | flag(f.first_touch_at.is_some(), CONTACTED)
            | flag(f.meeting_booked_at.is_some(), BOOKED)
            | flag(f.meeting_held_at.is_some(), HELD)
            | flag(f.escalations > 0, ESCALATED)
            | flag(f.reassigned, REASSIGNED)
            | flag(!f.misroutes.is_empty(), MISROUTED);
        Some(ReportRecord {
            captured,
            merged: f.merged,
            source,
            owner,
            claimed_by,
            routed,
            rule,
            misroute_rules,
            page,
            tier: f.tier,
            sla_minutes: f.sla_minutes,
            flags,
            won: f
                .outcome
                .as_deref()
                .and_then(Outcome::parse)
                .map(|o| o == Outcome::Won),
            sla,
            wall,
            working,
            handoff,
            handoff_other,
        })
    }

    pub fn strings(&self) -> &Strings {
        &self.strings
    }

    pub fn records(&self) -> &[ReportRecord] {
        &self.records
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The compact stored form (versioned).
    pub fn encode(&self) -> Result<Vec<u8>, RecordsError> {
        postcard::to_allocvec(&EncodedRef {
            version: RECORDS_VERSION,
            strings: &self.strings.list,
            records: &self.records,
        })
        .map_err(RecordsError::Encode)
    }

    pub fn decode(bytes: &[u8]) -> Result<Records, RecordsError> {
        // postcard writes a u8 as one byte: the version is read before the rest is trusted.
        match bytes.first() {
            Some(&RECORDS_VERSION) => {}
            Some(&found) => return Err(RecordsError::Version { found }),
            None => {
                return Err(RecordsError::Decode(
                    postcard::Error::DeserializeUnexpectedEnd,
                ))
            }
        }
        let encoded: Encoded = postcard::from_bytes(bytes).map_err(RecordsError::Decode)?;
        let count = encoded.strings.len();
        // Every id must name one of the strings: a damaged bucket is refused, never misread.
        let valid = |id: u32| (id as usize) < count;
        let ok = encoded.records.iter().all(|r| {
            valid(r.source)
                && r.owner.is_none_or(|(_, id)| valid(id))
                && r.claimed_by.is_none_or(valid)
                && r.routed.is_none_or(|(_, id)| valid(id))
                && r.rule.is_none_or(valid)
                && r.page.is_none_or(valid)
                && r.misroute_rules.iter().all(|id| valid(*id))
                && r.handoff_other.iter().all(|id| valid(*id))
        });
        if encoded.version != RECORDS_VERSION || !ok {
            return Err(RecordsError::Decode(
                postcard::Error::DeserializeBadEncoding,
            ));
        }
        Ok(Records {
            strings: Strings::from_list(encoded.strings),
            records: encoded.records,
        })
    }

    /// Moves `other`'s records to the end of these, their strings interned here.
    pub fn append(&mut self, other: Records) {
        let map: Vec<u32> = other
            .strings
            .list
            .iter()
            .map(|s| self.strings.intern(s))
            .collect();
        let at = |id: u32| map.get(id as usize).copied().unwrap_or(u32::MAX);
        self.records.reserve(other.records.len());
        for mut r in other.records {
            r.source = at(r.source);
            r.owner = r.owner.map(|(kind, id)| (kind, at(id)));
            r.claimed_by = r.claimed_by.map(at);
            r.routed = r.routed.map(|(kind, id)| (kind, at(id)));
            r.rule = r.rule.map(at);
            r.page = r.page.map(at);
            for id in r
                .misroute_rules
                .iter_mut()
                .chain(r.handoff_other.iter_mut())
            {
                *id = at(*id);
            }
            self.records.push(r);
        }
    }

    pub fn retain(&mut self, keep: impl FnMut(&ReportRecord) -> bool) {
        self.records.retain(keep);
    }

    /// Sorts by capture time (stable), so that [`Records::captured_in`] can slice.
    pub fn sort_by_capture(&mut self) {
        self.records.sort_by_key(|r| r.captured);
    }

    /// The records captured in `[from, to)`, out of records sorted by capture.
    pub fn captured_in(&self, from: Timestamp, to: Timestamp) -> &[ReportRecord] {
        let (from, to) = (from.as_nanosecond(), to.as_nanosecond());
        let start = self.records.partition_point(|r| r.captured < from);
        let end = self.records.partition_point(|r| r.captured < to);
        &self.records[start..end.max(start)]
    }
}

/// The UTC hour holding `at`, as hours since the epoch: how stores key the buckets.
pub fn hour_of(at: Timestamp) -> i64 {
    at.as_millisecond().div_euclid(HOUR_MS)
}

/// The start of hour `hour` (see [`hour_of`]); `None` out of range.
pub fn hour_start(hour: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(hour.checked_mul(HOUR_MS)?).ok()
}

/// The hours overlapping `[from, to)`: from [`hour_of`]`(from)` up to, not including, the
/// returned end.
pub fn hours_overlapping(from: Timestamp, to: Timestamp) -> (i64, i64) {
    let first = hour_of(from);
    let hour_ns = i128::from(HOUR_MS) * 1_000_000;
    let end = to.as_nanosecond().div_euclid(hour_ns)
        + i128::from(to.as_nanosecond().rem_euclid(hour_ns) != 0);
    (first, i64::try_from(end).unwrap_or(i64::MAX).max(first))
}

impl Directory {
    /// A digest of what a record's measurement depends on: every owner's schedule (hours,
    /// time zone, days off) and the record layout. Teams, handoff fields and filters are
    /// applied when the figures are read, so they are not part of it.
    pub fn fingerprint(&self) -> u64 {
        let mut lines: Vec<String> = self
            .schedules()
            .map(|(owner, schedule)| format!("{}={schedule:?}", owner.key()))
            .collect();
        lines.sort_unstable();
        let mut digest = Sha256::new();
        digest.update([RECORDS_VERSION]);
        for line in &lines {
            digest.update(line.as_bytes());
            digest.update(b"\n");
        }
        let bytes = digest.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[..8]);
        u64::from_be_bytes(first)
    }
}

// ---------------------------------------------------------------------------------------
// The figures over records

#[derive(Default)]
struct Tally {
    leads: u64,
    notified: u64,
    claimed: u64,
    contacted: u64,
    booked: u64,
    held: u64,
    met: u64,
    missed: u64,
    pending: u64,
    escalated: u64,
    reassigned: u64,
    misrouted: u64,
    outcomes: u64,
    won: u64,
    spreads: [Vec<i64>; 5],
}

impl Tally {
    fn add(&mut self, r: &ReportRecord, durations: &Durations, sla: SlaStatus) {
        let n = |on: bool| u64::from(on);
        self.leads += 1;
        self.notified += n(r.has(NOTIFIED));
        self.claimed += n(r.has(CLAIMED));
        self.contacted += n(r.has(CONTACTED));
        self.booked += n(r.has(BOOKED));
        self.held += n(r.has(HELD));
        self.met += n(sla == SlaStatus::Met);
        self.missed += n(sla == SlaStatus::Missed);
        self.pending += n(sla == SlaStatus::Pending);
        self.escalated += n(r.has(ESCALATED));
        self.reassigned += n(r.has(REASSIGNED));
        self.misrouted += n(r.has(MISROUTED));
        self.outcomes += n(r.won.is_some());
        self.won += n(r.won == Some(true));
        for (spread, value) in self.spreads.iter_mut().zip(durations) {
            if let Some(secs) = value {
                spread.push(*secs);
            }
        }
    }

    fn group(self, key: String) -> Group {
        let [system, acknowledgement, human, first_response, time_to_meeting] =
            self.spreads.map(spread);
        let n = self.leads;
        Group {
            key,
            leads: n,
            notified: self.notified,
            claimed: self.claimed,
            contacted: self.contacted,
            meetings_booked: self.booked,
            meetings_held: self.held,
            contact_rate: rate(self.contacted, n),
            meeting_booked_rate: rate(self.booked, n),
            meeting_held_rate: rate(self.held, n),
            system,
            acknowledgement,
            human,
            first_response,
            time_to_meeting,
            sla_met: self.met,
            sla_missed: self.missed,
            sla_pending: self.pending,
            sla_compliance: rate(self.met, self.met + self.missed),
            escalated: self.escalated,
            reassigned: self.reassigned,
            misrouted: self.misrouted,
            outcomes: self.outcomes,
            won: self.won,
            won_rate: rate(self.won, self.outcomes),
        }
    }
}

/// The nearest-rank p50 and p90 without sorting the whole list: two selections.
fn spread(mut secs: Vec<i64>) -> Spread {
    let n = secs.len();
    if n == 0 {
        return Spread::default();
    }
    let rank = |p: u64| ((p * n as u64).div_ceil(100).max(1) as usize).min(n) - 1;
    let (r50, r90) = (rank(50), rank(90));
    let (below, p90, _) = secs.select_nth_unstable(r90);
    let p90 = *p90;
    let p50 = if r50 == r90 {
        p90
    } else {
        *below.select_nth_unstable(r50).1
    };
    Spread {
        count: n as u64,
        p50_secs: Some(p50),
        p90_secs: Some(p90),
    }
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

#[derive(Default)]
struct TierTally {
    leads: u64,
    met: u64,
    missed: u64,
    pending: u64,
    sla_minutes: Option<u32>,
}

impl TierTally {
    fn add(&mut self, r: &ReportRecord, sla: SlaStatus) {
        self.leads += 1;
        self.met += u64::from(sla == SlaStatus::Met);
        self.missed += u64::from(sla == SlaStatus::Missed);
        self.pending += u64::from(sla == SlaStatus::Pending);
        // The tier's SLA as configured when its leads were qualified (the latest seen).
        if r.sla_minutes.is_some() {
            self.sla_minutes = r.sla_minutes;
        }
    }

    fn row(self, tier: Option<u8>) -> TierSla {
        TierSla {
            tier,
            sla_minutes: self.sla_minutes,
            leads: self.leads,
            met: self.met,
            missed: self.missed,
            pending: self.pending,
            compliance: rate(self.met, self.met + self.missed),
        }
    }
}

fn in_window(r: &ReportRecord, from: i128, to: i128) -> bool {
    from <= r.captured && r.captured < to
}

/// SLA compliance per tier of the counted records captured in `[from, to)`, as of `now`
/// (what [`SpeedToLead::sla_by_tier`] holds, alone: the dashboard's per-day chart).
pub fn sla_by_tier(
    records: &[ReportRecord],
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Vec<TierSla> {
    let (from, to, now) = (
        from.as_nanosecond(),
        to.as_nanosecond(),
        now.as_nanosecond(),
    );
    let mut tiers: BTreeMap<Option<u8>, TierTally> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| in_window(r, from, to) && r.counts())
    {
        tiers.entry(r.tier).or_default().add(r, r.sla.status(now));
    }
    tiers
        .into_iter()
        .map(|(tier, tally)| tally.row(tier))
        .collect()
}

/// The speed-to-lead report over `records` (a slice of `all`'s), leaving out those outside
/// the window and merged ones: one pass, whatever the number of groups.
pub fn figures(
    all: &Records,
    records: &[ReportRecord],
    params: &Params,
    directory: &Directory,
    handoff_fields: &[String],
) -> SpeedToLead {
    const NONE: &str = "(none)";
    let strings = &all.strings;
    let (from, to, now) = (
        params.from.as_nanosecond(),
        params.to.as_nanosecond(),
        params.now.as_nanosecond(),
    );
    let owner_of = |(kind, id): Holder| match kind {
        HolderKind::Rep => Owner::Rep(strings.get(id).to_owned()),
        HolderKind::Pool => Owner::Pool(strings.get(id).to_owned()),
        HolderKind::Queue => Owner::Queue(strings.get(id).to_owned()),
    };
    // Each record's group key, worked out once per distinct value it depends on.
    let key_of = |r: &ReportRecord| -> String {
        match params.by {
            Dimension::Rep => match r.owner {
                Some((HolderKind::Rep, id)) => strings.get(id).to_owned(),
                Some((kind, id)) => format!("{}:{}", kind.prefix(), strings.get(id)),
                None => "(unassigned)".into(),
            },
            Dimension::Team => r
                .owner
                .and_then(|o| directory.team(&owner_of(o)).map(str::to_owned))
                .unwrap_or_else(|| NONE.into()),
            Dimension::Tier => r.tier.map(|t| t.to_string()).unwrap_or_else(|| NONE.into()),
            Dimension::Source => strings.get(r.source).to_owned(),
            Dimension::Rule => r.rule.map_or(NONE, |id| strings.get(id)).to_owned(),
            Dimension::Page => r.page.map_or(NONE, |id| strings.get(id)).to_owned(),
        }
    };
    let token = |r: &ReportRecord| -> (u8, u32) {
        let holder = |h: Option<Holder>| match h {
            None => (0, 0),
            Some((kind, id)) => (kind as u8 + 1, id),
        };
        match params.by {
            Dimension::Rep | Dimension::Team => holder(r.owner),
            Dimension::Tier => r.tier.map_or((0, 0), |t| (1, u32::from(t))),
            Dimension::Source => (1, r.source),
            Dimension::Rule => r.rule.map_or((0, 0), |id| (1, id)),
            Dimension::Page => r.page.map_or((0, 0), |id| (1, id)),
        }
    };

    let mut merged_excluded = 0u64;
    let mut totals = Tally::default();
    let mut slots: FxHashMap<(u8, u32), usize> = FxHashMap::default();
    let mut keyed: BTreeMap<String, usize> = BTreeMap::new();
    let mut groups: Vec<Tally> = Vec::new();
    let mut tiers: BTreeMap<Option<u8>, TierTally> = BTreeMap::new();
    let mut buckets = [(0u64, 0u64, 0u64); BUCKETS.len()];
    let mut rules: FxHashMap<u32, (u64, u64)> = FxHashMap::default();
    let mut notified = 0u64;
    let mut complete = 0u64;
    let wanted: Vec<Result<u16, Option<u32>>> = handoff_fields
        .iter()
        .map(
            |field| match HANDOFF_FIELDS.iter().position(|k| k == field) {
                Some(bit) => Ok(1u16 << bit),
                None => Err(strings.id(field)),
            },
        )
        .collect();
    let mut missing = vec![0u64; handoff_fields.len()];

    for r in records.iter().filter(|r| in_window(r, from, to)) {
        if !r.counts() {
            merged_excluded += 1;
            continue;
        }
        let sla = r.sla.status(now);
        let durations = r.durations(params.hours);
        totals.add(r, durations, sla);
        let slot = *slots.entry(token(r)).or_insert_with(|| {
            let next = groups.len();
            *keyed.entry(key_of(r)).or_insert_with(|| {
                groups.push(Tally::default());
                next
            })
        });
        groups[slot].add(r, durations, sla);
        tiers.entry(r.tier).or_default().add(r, sla);

        let row = &mut buckets[bucket(durations[FIRST_RESPONSE].map(SignedDuration::from_secs))];
        row.0 += 1;
        row.1 += u64::from(r.won.is_some());
        row.2 += u64::from(r.won == Some(true));

        // A rule's leads: those it routed first, and those it routed after a "not mine".
        if let Some(rule) = r.rule {
            let entry = rules.entry(rule).or_default();
            entry.0 += 1;
            entry.1 += u64::from(r.misroute_rules.contains(&rule));
        }
        for rule in r.misroute_rules.iter().filter(|m| Some(**m) != r.rule) {
            let entry = rules.entry(*rule).or_default();
            entry.0 += 1;
            entry.1 += 1;
        }

        if r.has(NOTIFIED) {
            notified += 1;
            let mut lacks_any = false;
            for (field, count) in wanted.iter().zip(missing.iter_mut()) {
                let has = match field {
                    Ok(bit) => r.handoff & bit != 0,
                    Err(Some(id)) => r.handoff_other.contains(id),
                    Err(None) => false,
                };
                if !has {
                    *count += 1;
                    lacks_any = true;
                }
            }
            complete += u64::from(!lacks_any);
        }
    }

    let mut tallies: Vec<Option<Tally>> = groups.into_iter().map(Some).collect();
    let groups = keyed
        .into_iter()
        .filter_map(|(key, slot)| Some(tallies.get_mut(slot)?.take()?.group(key)))
        .collect();
    let total = totals.leads;
    let response_buckets = buckets
        .iter()
        .zip(BUCKETS)
        .map(|((leads, outcomes, won), name)| BucketRow {
            bucket: name,
            leads: *leads,
            share: rate(*leads, total),
            outcomes: *outcomes,
            won: *won,
            won_rate: rate(*won, *outcomes),
        })
        .collect();
    let routing_accuracy = rules
        .into_iter()
        .map(|(rule, counts)| (strings.get(rule).to_owned(), counts))
        .collect::<BTreeMap<String, (u64, u64)>>()
        .into_iter()
        .map(|(rule, (leads, misrouted))| RuleAccuracy {
            rule,
            leads,
            misrouted,
            accuracy: rate(leads - misrouted, leads),
        })
        .collect();
    let handoff = Handoff {
        fields: handoff_fields.to_vec(),
        notified,
        complete,
        completeness: rate(complete, notified),
        missing: handoff_fields.iter().cloned().zip(missing).collect(),
    };
    SpeedToLead {
        from: params.from,
        to: params.to,
        generated_at: params.now,
        by: params.by,
        hours: params.hours,
        merged_excluded,
        totals: totals.group("all".into()),
        groups,
        sla_by_tier: tiers
            .into_iter()
            .map(|(tier, tally)| tally.row(tier))
            .collect(),
        response_buckets,
        routing_accuracy,
        handoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::LeadState;
    use crate::report::{speed_to_lead, LeadFacts, MisrouteFact};

    /// The figures as they were computed straight from the facts before records existed:
    /// kept as the oracle the records' figures must equal.
    mod oracle {
        use std::collections::BTreeMap;

        use jiff::{SignedDuration, Timestamp};

        use crate::model::{Outcome, Owner};
        use crate::report::figures::{
            bucket, percentile, BucketRow, Dimension, Directory, Group, Handoff, Hours, Params,
            RuleAccuracy, SpeedToLead, Spread, TierSla, BUCKETS,
        };
        use crate::report::LeadFacts;

        fn spread_of(mut secs: Vec<i64>) -> Spread {
            secs.sort_unstable();
            Spread {
                count: secs.len() as u64,
                p50_secs: percentile(&secs, 50),
                p90_secs: percentile(&secs, 90),
            }
        }

        fn rate(part: u64, whole: u64) -> Option<f64> {
            (whole > 0).then(|| part as f64 / whole as f64)
        }

        /// One lead's durations, measured on the chosen clock.
        struct Measured<'a> {
            facts: &'a LeadFacts,
            system: Option<SignedDuration>,
            acknowledgement: Option<SignedDuration>,
            human: Option<SignedDuration>,
            first_response: Option<SignedDuration>,
            time_to_meeting: Option<SignedDuration>,
            sla: SlaStatus,
            won: Option<bool>,
        }

        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum SlaStatus {
            Met,
            Missed,
            Pending,
            /// No tier, no SLA, or never routed.
            None,
        }

        impl<'a> Measured<'a> {
            fn of(
                facts: &'a LeadFacts,
                hours: Hours,
                directory: &Directory,
                now: Timestamp,
            ) -> Self {
                let schedule = match hours {
                    Hours::Wall => None,
                    Hours::Working => facts.owner.as_ref().and_then(|o| directory.schedule(o)),
                };
                // A wall clock stepped back between two stamps would make a part negative: zero.
                let between = |from: Option<Timestamp>, to: Option<Timestamp>| {
                    let (from, to) = (from?, to?);
                    Some(match schedule {
                        Some(schedule) => schedule.open_duration(from, to),
                        None => to.duration_since(from).max(SignedDuration::ZERO),
                    })
                };
                let start = facts.start();
                let sla = match (facts.sla_deadline(), facts.owner.is_some()) {
                    (Some(deadline), true) => match facts.responded_at() {
                        Some(at) if at <= deadline => SlaStatus::Met,
                        Some(_) => SlaStatus::Missed,
                        None if now > deadline => SlaStatus::Missed,
                        None => SlaStatus::Pending,
                    },
                    _ => SlaStatus::None,
                };
                Measured {
                    facts,
                    system: between(start, facts.notified_at),
                    acknowledgement: between(facts.notified_at, facts.claimed_at),
                    human: between(facts.claimed_at.or(facts.notified_at), facts.first_touch_at),
                    first_response: between(start, facts.first_touch_at),
                    time_to_meeting: between(start, facts.meeting_booked_at),
                    sla,
                    won: facts
                        .outcome
                        .as_deref()
                        .and_then(Outcome::parse)
                        .map(|o| o == Outcome::Won),
                }
            }
        }

        fn group(key: String, leads: &[&Measured<'_>]) -> Group {
            let count =
                |f: &dyn Fn(&Measured<'_>) -> bool| leads.iter().filter(|m| f(m)).count() as u64;
            let spread = |f: &dyn Fn(&Measured<'_>) -> Option<SignedDuration>| {
                spread_of(
                    leads
                        .iter()
                        .filter_map(|m| f(m))
                        .map(|d| d.as_secs())
                        .collect(),
                )
            };
            let n = leads.len() as u64;
            let contacted = count(&|m| m.facts.first_touch_at.is_some());
            let booked = count(&|m| m.facts.meeting_booked_at.is_some());
            let held = count(&|m| m.facts.meeting_held_at.is_some());
            let sla_met = count(&|m| m.sla == SlaStatus::Met);
            let sla_missed = count(&|m| m.sla == SlaStatus::Missed);
            let outcomes = count(&|m| m.won.is_some());
            let won = count(&|m| m.won == Some(true));
            Group {
                key,
                leads: n,
                notified: count(&|m| m.facts.notified_at.is_some()),
                claimed: count(&|m| m.facts.claimed_at.is_some()),
                contacted,
                meetings_booked: booked,
                meetings_held: held,
                contact_rate: rate(contacted, n),
                meeting_booked_rate: rate(booked, n),
                meeting_held_rate: rate(held, n),
                system: spread(&|m| m.system),
                acknowledgement: spread(&|m| m.acknowledgement),
                human: spread(&|m| m.human),
                first_response: spread(&|m| m.first_response),
                time_to_meeting: spread(&|m| m.time_to_meeting),
                sla_met,
                sla_missed,
                sla_pending: count(&|m| m.sla == SlaStatus::Pending),
                sla_compliance: rate(sla_met, sla_met + sla_missed),
                escalated: count(&|m| m.facts.escalations > 0),
                reassigned: count(&|m| m.facts.reassigned),
                misrouted: count(&|m| !m.facts.misroutes.is_empty()),
                outcomes,
                won,
                won_rate: rate(won, outcomes),
            }
        }

        /// The key of a lead in the report's groups.
        fn key_of(facts: &LeadFacts, by: Dimension, directory: &Directory) -> String {
            const NONE: &str = "(none)";
            let owner_name = |owner: &Owner| match owner {
                Owner::Rep(id) => id.clone(),
                other => other.key(),
            };
            match by {
                Dimension::Rep => facts
                    .owner
                    .as_ref()
                    .map(owner_name)
                    .unwrap_or_else(|| "(unassigned)".into()),
                Dimension::Team => facts
                    .owner
                    .as_ref()
                    .and_then(|o| directory.team(o))
                    .unwrap_or(NONE)
                    .to_owned(),
                Dimension::Tier => facts
                    .tier
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| NONE.into()),
                Dimension::Source => facts.source.clone(),
                Dimension::Rule => facts.rule.clone().unwrap_or_else(|| NONE.into()),
                Dimension::Page => facts.page.clone().unwrap_or_else(|| NONE.into()),
            }
        }

        /// The report over `facts` (leads outside the window are left out, as are merged leads).
        pub fn speed_to_lead(
            facts: &[LeadFacts],
            params: &Params,
            directory: &Directory,
            handoff_fields: &[String],
        ) -> SpeedToLead {
            let in_window: Vec<&LeadFacts> = facts
                .iter()
                .filter(|f| {
                    f.captured_at
                        .is_some_and(|at| params.from <= at && at < params.to)
                })
                .collect();
            let merged_excluded = in_window.iter().filter(|f| !f.counts()).count() as u64;
            let measured: Vec<Measured<'_>> = in_window
                .into_iter()
                .filter(|f| f.counts())
                .map(|f| Measured::of(f, params.hours, directory, params.now))
                .collect();
            let all: Vec<&Measured<'_>> = measured.iter().collect();

            let mut keyed: BTreeMap<String, Vec<&Measured<'_>>> = BTreeMap::new();
            for m in &measured {
                keyed
                    .entry(key_of(m.facts, params.by, directory))
                    .or_default()
                    .push(m);
            }
            let groups = keyed
                .into_iter()
                .map(|(key, leads)| group(key, &leads))
                .collect();

            let mut tiers: BTreeMap<Option<u8>, Vec<&Measured<'_>>> = BTreeMap::new();
            for m in &measured {
                tiers.entry(m.facts.tier).or_default().push(m);
            }
            let sla_by_tier = tiers
                .into_iter()
                .map(|(tier, leads)| {
                    let count = |s: SlaStatus| leads.iter().filter(|m| m.sla == s).count() as u64;
                    let (met, missed) = (count(SlaStatus::Met), count(SlaStatus::Missed));
                    // The tier's SLA as configured when its leads were qualified (the latest seen).
                    let sla_minutes = leads.iter().rev().find_map(|m| m.facts.sla_minutes);
                    TierSla {
                        tier,
                        sla_minutes,
                        leads: leads.len() as u64,
                        met,
                        missed,
                        pending: count(SlaStatus::Pending),
                        compliance: rate(met, met + missed),
                    }
                })
                .collect();

            let mut buckets: Vec<Vec<&Measured<'_>>> = vec![Vec::new(); BUCKETS.len()];
            for m in &measured {
                buckets[bucket(m.first_response)].push(m);
            }
            let total = measured.len() as u64;
            let response_buckets = buckets
                .iter()
                .zip(BUCKETS)
                .map(|(leads, name)| {
                    let outcomes = leads.iter().filter(|m| m.won.is_some()).count() as u64;
                    let won = leads.iter().filter(|m| m.won == Some(true)).count() as u64;
                    BucketRow {
                        bucket: name,
                        leads: leads.len() as u64,
                        share: rate(leads.len() as u64, total),
                        outcomes,
                        won,
                        won_rate: rate(won, outcomes),
                    }
                })
                .collect();

            // A rule's leads: those it routed first, and those it routed after a "not mine".
            let mut rules: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for m in &measured {
                let f = m.facts;
                let mut routed_by: Vec<&str> = f.rule.iter().map(String::as_str).collect();
                routed_by.extend(f.misroutes.iter().map(|x| x.rule.as_str()));
                routed_by.sort_unstable();
                routed_by.dedup();
                for rule in routed_by {
                    let entry = rules.entry(rule.to_owned()).or_default();
                    entry.0 += 1;
                    if f.misroutes.iter().any(|x| x.rule == rule) {
                        entry.1 += 1;
                    }
                }
            }
            let routing_accuracy = rules
                .into_iter()
                .map(|(rule, (leads, misrouted))| RuleAccuracy {
                    rule,
                    leads,
                    misrouted,
                    accuracy: rate(leads - misrouted, leads),
                })
                .collect();

            let notified: Vec<&Measured<'_>> = measured
                .iter()
                .filter(|m| m.facts.notified_at.is_some())
                .collect();
            let lacks = |m: &Measured<'_>, field: &String| !m.facts.handoff.contains(field);
            let complete = notified
                .iter()
                .filter(|m| !handoff_fields.iter().any(|f| lacks(m, f)))
                .count() as u64;
            let handoff = Handoff {
                fields: handoff_fields.to_vec(),
                notified: notified.len() as u64,
                complete,
                completeness: rate(complete, notified.len() as u64),
                missing: handoff_fields
                    .iter()
                    .map(|field| {
                        let n = notified.iter().filter(|m| lacks(m, field)).count() as u64;
                        (field.clone(), n)
                    })
                    .collect(),
            };

            SpeedToLead {
                from: params.from,
                to: params.to,
                generated_at: params.now,
                by: params.by,
                hours: params.hours,
                merged_excluded,
                totals: group("all".into(), &all),
                groups,
                sla_by_tier,
                response_buckets,
                routing_accuracy,
                handoff,
            }
        }
    }

    fn config() -> Config {
        let text = include_str!("../../../config/leadrelay.toml");
        Config::parse(text, "leadrelay.toml", &|_| None).expect("the shipped configuration")
    }

    /// Monday 2026-11-23 06:00 UTC: before EMEA's and after APAC's working day.
    fn t0() -> Timestamp {
        "2026-11-23T06:00:00Z".parse().expect("time")
    }

    /// Facts of every kind the figures tell apart, spread over three days, with stamps to
    /// the nanosecond so that no rounding can hide behind whole milliseconds.
    fn varied(n: u64) -> Vec<LeadFacts> {
        let owners = [
            Some(Owner::Rep("bruno".into())),
            Some(Owner::Rep("fatima".into())),
            Some(Owner::Rep("chen".into())),
            Some(Owner::Rep("alice".into())),
            Some(Owner::Rep("nobody-configured".into())),
            Some(Owner::Queue("sales-inbox".into())),
            Some(Owner::Pool("solutions".into())),
            None,
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % below
        };
        (0..n)
            .map(|i| {
                let captured = t0()
                    + SignedDuration::from_secs(next(3 * 86_400) as i64)
                    + SignedDuration::from_nanos(next(1_000_000_000) as i64);
                let after = |secs: u64| Some(captured + SignedDuration::from_secs(secs as i64));
                let owner = owners[next(owners.len() as u64) as usize].clone();
                let claimed = next(3) != 0;
                let claimer = ["bruno", "fatima", "chen"][next(3) as usize];
                let tier = [None, Some(1), Some(2), Some(3)][next(4) as usize];
                let mut misroutes = Vec::new();
                for _ in 0..next(4).saturating_sub(1) {
                    misroutes.push(MisrouteFact {
                        rep: "bruno".into(),
                        rule: ["EMEA", "APAC", "Fallback"][next(3) as usize].into(),
                    });
                }
                LeadFacts {
                    id: format!("lead-{i}"),
                    source: ["website", "forms", "chat"][next(3) as usize].into(),
                    state: LeadState::Notified,
                    tier,
                    sla_minutes: tier.map(|t| [5, 15, 1440][usize::from(t - 1)]),
                    owner,
                    rule: [None, Some("EMEA"), Some("APAC"), Some("Americas")][next(4) as usize]
                        .map(str::to_owned),
                    routed_to: [None, Some("rep:fatima"), Some("queue:sdr"), Some("odd")]
                        [next(4) as usize]
                        .map(str::to_owned),
                    claimed_by: claimed.then(|| claimer.to_owned()),
                    page: [None, Some("/pricing"), Some("/demo")][next(3) as usize]
                        .map(str::to_owned),
                    captured_at: (next(40) != 0).then_some(captured),
                    held_until: (next(5) == 0).then(|| after(3 * 3600)).flatten(),
                    notified_at: (next(8) != 0).then(|| after(next(120))).flatten(),
                    claimed_at: claimed.then(|| after(next(7200))).flatten(),
                    first_touch_at: (next(3) != 0).then(|| after(next(100_000))).flatten(),
                    meeting_booked_at: (next(4) == 0).then(|| after(next(200_000))).flatten(),
                    meeting_held_at: (next(6) == 0).then(|| after(300_000)).flatten(),
                    closed_at: None,
                    escalations: [0, 0, 1, 2][next(4) as usize],
                    reassigned: next(5) == 0,
                    misroutes,
                    outcome: [None, Some("won"), Some("lost"), Some("someday")][next(4) as usize]
                        .map(str::to_owned),
                    handoff: ["email", "name", "company", "question", "phone", "shoe_size"]
                        .into_iter()
                        .filter(|_| next(3) != 0)
                        .map(str::to_owned)
                        .collect(),
                    merged: next(15) == 0,
                }
            })
            .collect()
    }

    #[test]
    fn figures_from_records_are_the_figures_from_facts() {
        let config = config();
        let directory = Directory::new(&config);
        let facts = varied(3000);
        let handoff: Vec<String> = ["email", "company", "question", "shoe_size", "fax"]
            .map(str::to_owned)
            .to_vec();
        // `now` inside the window: some open SLAs are still pending, others are missed.
        let now = t0() + SignedDuration::from_hours(50);
        let windows = [
            (t0(), now),
            (
                t0() + SignedDuration::from_hours(7),
                t0() + SignedDuration::from_hours(31),
            ),
            (
                t0() - SignedDuration::from_hours(24),
                t0() + SignedDuration::from_hours(96),
            ),
        ];
        let mut compared = 0;
        for (from, to) in windows {
            for by in Dimension::NAMES.map(|n| Dimension::parse(n).expect("dimension")) {
                for hours in [Hours::Wall, Hours::Working] {
                    let params = Params {
                        from,
                        to,
                        by,
                        hours,
                        now,
                    };
                    let expected = oracle::speed_to_lead(&facts, &params, &directory, &handoff);
                    let actual = speed_to_lead(&facts, &params, &directory, &handoff);
                    assert_eq!(actual, expected, "{by:?} {hours:?} {from}..{to}");
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 36);
        // The cases the comparison is meant to cover are all there.
        let all = oracle::speed_to_lead(
            &facts,
            &Params {
                from: windows[2].0,
                to: windows[2].1,
                by: Dimension::Rep,
                hours: Hours::Working,
                now,
            },
            &directory,
            &handoff,
        );
        let t = &all.totals;
        assert!(all.merged_excluded > 0);
        assert!(
            t.sla_met > 0 && t.sla_missed > 0 && t.sla_pending > 0,
            "{t:?}"
        );
        assert!(t.misrouted > 0 && t.won > 0 && t.outcomes > t.won && t.escalated > 0);
        assert!(all.groups.iter().any(|g| g.key == "(unassigned)"));
        assert!(all.groups.iter().any(|g| g.key == "queue:sales-inbox"));
        let wall = oracle::speed_to_lead(
            &facts,
            &Params {
                hours: Hours::Wall,
                ..Params {
                    from: windows[2].0,
                    to: windows[2].1,
                    by: Dimension::Rep,
                    hours: Hours::Working,
                    now,
                }
            },
            &directory,
            &handoff,
        );
        assert_ne!(
            wall.totals.first_response, t.first_response,
            "after-hours owners"
        );
    }

    #[test]
    fn hourly_buckets_read_back_to_the_same_figures_and_days() {
        let config = config();
        let directory = Directory::new(&config);
        let facts = varied(2000);
        let handoff = config.reports.handoff_fields.clone();
        let now = t0() + SignedDuration::from_hours(50);
        // One bucket per capture hour, encoded and decoded, appended in hour order.
        let mut by_hour: BTreeMap<i64, Vec<LeadFacts>> = BTreeMap::new();
        for f in &facts {
            if let Some(at) = f.captured_at {
                by_hour.entry(hour_of(at)).or_default().push(f.clone());
            }
        }
        let mut read = Records::default();
        for hour_facts in by_hour.values() {
            let mut bucket = Records::of(hour_facts, &directory);
            bucket.sort_by_capture();
            let bytes = bucket.encode().expect("encoded");
            read.append(Records::decode(&bytes).expect("decoded"));
        }
        read.sort_by_capture();
        let from = t0() + SignedDuration::from_mins(90);
        for hours in [Hours::Wall, Hours::Working] {
            let params = Params {
                from,
                to: now,
                by: Dimension::Rep,
                hours,
                now,
            };
            let slice = read.captured_in(from, now);
            assert_eq!(
                figures(&read, slice, &params, &directory, &handoff),
                oracle::speed_to_lead(&facts, &params, &directory, &handoff)
            );
        }
        for day in 0..2 {
            let start = from + SignedDuration::from_hours(24 * day);
            let end = start + SignedDuration::from_hours(24);
            let params = Params {
                from: start,
                to: end,
                by: Dimension::Tier,
                hours: Hours::Wall,
                now,
            };
            let expected = oracle::speed_to_lead(&facts, &params, &directory, &handoff);
            let rows = sla_by_tier(read.captured_in(start, end), start, end, now);
            // Only which tiers have an SLA is read of `sla_minutes` per day; the counts all.
            let strip = |rows: Vec<TierSla>| {
                rows.into_iter()
                    .map(|r| {
                        (
                            r.tier,
                            r.sla_minutes.is_some(),
                            r.leads,
                            r.met,
                            r.missed,
                            r.pending,
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(strip(rows), strip(expected.sla_by_tier));
        }
    }

    #[test]
    fn a_bucket_of_another_layout_or_damaged_is_refused() {
        let directory = Directory::new(&config());
        let records = Records::of(&varied(50), &directory);
        let mut bytes = records.encode().expect("encoded");
        assert_eq!(
            Records::decode(&bytes).expect("decoded").len(),
            records.len()
        );
        bytes[0] = RECORDS_VERSION + 1;
        assert!(matches!(
            Records::decode(&bytes),
            Err(RecordsError::Version { .. })
        ));
        assert!(Records::decode(&[]).is_err());
        let bytes = records.encode().expect("encoded");
        assert!(Records::decode(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn the_fingerprint_follows_the_schedules() {
        let config = config();
        let same = Directory::new(&config).fingerprint();
        assert_eq!(same, Directory::new(&config).fingerprint());
        let text = include_str!("../../../config/leadrelay.toml").replacen(
            "timezone = \"Europe/London\"",
            "timezone = \"Europe/Paris\"",
            1,
        );
        let moved = Config::parse(&text, "leadrelay.toml", &|_| None).expect("config");
        assert_ne!(same, Directory::new(&moved).fingerprint());
    }

    #[test]
    fn hours_are_utc_hours_and_overlap_exactly() {
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().expect("time");
        let hour = hour_of(at);
        assert_eq!(hour_start(hour), Some(at));
        assert_eq!(hour_of(at - SignedDuration::from_nanos(1)), hour - 1);
        assert_eq!(hours_overlapping(at, at), (hour, hour));
        assert_eq!(
            hours_overlapping(at - SignedDuration::from_mins(1), at),
            (hour - 1, hour)
        );
        assert_eq!(
            hours_overlapping(at, at + SignedDuration::from_nanos(1)),
            (hour, hour + 1)
        );
        let before: Timestamp = "1969-12-31T23:30:00Z".parse().expect("time");
        assert_eq!(hour_of(before), -1);
    }
}
