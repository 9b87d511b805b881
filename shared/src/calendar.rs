//! When people work: weekly hours in a time zone, holidays and out-of-office dates, and the
//! next opening after a given instant. Parsers here back both config validation and routing.
//! A leaf: it imports nothing else of the crate.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Opening spans per weekday, Monday first, each `[start, end)` in local time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeeklyHours {
    days: [Vec<(Time, Time)>; 7],
}

impl WeeklyHours {
    /// Parses lines such as `mon-fri 09:00-17:30`, `sat 10:00-14:00`, `mon,wed 08:00-12:00` or
    /// `daily 00:00-24:00`.
    pub fn parse(lines: &[String]) -> Result<WeeklyHours, String> {
        let mut hours = WeeklyHours::default();
        for line in lines {
            let (days, span) = line.trim().split_once(char::is_whitespace).ok_or_else(|| {
                format!("{line:?}: expected DAYS HH:MM-HH:MM, such as \"mon-fri 09:00-17:30\"")
            })?;
            let (start, end) = span
                .trim()
                .split_once('-')
                .ok_or_else(|| format!("{line:?}: expected a span such as 09:00-17:30"))?;
            let start = parse_time(start)?;
            let end = parse_time(end)?;
            if end <= start {
                return Err(format!(
                    "{line:?}: the span must end after it starts (split a night shift over two days)"
                ));
            }
            for day in parse_days(days)? {
                hours.days[day].push((start, end));
            }
        }
        for day in &mut hours.days {
            day.sort();
        }
        Ok(hours)
    }

    fn spans(&self, date: Date) -> &[(Time, Time)] {
        &self.days[usize::from(date.weekday().to_monday_zero_offset().unsigned_abs())]
    }
}

fn parse_time(text: &str) -> Result<Time, String> {
    let text = text.trim();
    if text == "24:00" {
        return Ok(Time::MAX);
    }
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not a time of day (HH:MM)"))?;
    let hour: i8 = h
        .parse()
        .map_err(|_| format!("{text:?} is not a time of day (HH:MM)"))?;
    let minute: i8 = m
        .parse()
        .map_err(|_| format!("{text:?} is not a time of day (HH:MM)"))?;
    Time::new(hour, minute, 0, 0).map_err(|_| format!("{text:?} is not a time of day (HH:MM)"))
}

fn parse_days(text: &str) -> Result<Vec<usize>, String> {
    let day = |name: &str| {
        DAY_NAMES
            .iter()
            .position(|d| name.trim().eq_ignore_ascii_case(d))
            .ok_or_else(|| format!("{name:?} is not a day (mon, tue, ... sun)"))
    };
    if text.eq_ignore_ascii_case("daily") {
        return Ok((0..7).collect());
    }
    let mut days = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                if to < from {
                    return Err(format!(
                        "{part:?}: a day range runs forward, such as mon-fri"
                    ));
                }
                days.extend(from..=to);
            }
            None => days.push(day(part)?),
        }
    }
    Ok(days)
}

/// A date (`2026-12-25`) or an inclusive range (`2026-12-21..2027-01-04`).
pub fn parse_date_range(text: &str) -> Result<(Date, Date), String> {
    let date = |t: &str| {
        t.trim()
            .parse::<Date>()
            .map_err(|_| format!("{t:?} is not a date (YYYY-MM-DD)"))
    };
    match text.split_once("..") {
        Some((from, to)) => {
            let (from, to) = (date(from)?, date(to)?);
            if to < from {
                return Err(format!("{text:?}: the range ends before it starts"));
            }
            Ok((from, to))
        }
        None => {
            let day = date(text)?;
            Ok((day, day))
        }
    }
}

pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| format!("{name:?} is not a known IANA time zone"))
}

/// Why someone is not working at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    OffHours,
    Holiday(Date),
    OutOfOffice { until: Date },
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::OffHours => f.write_str("outside working hours"),
            Closed::Holiday(day) => write!(f, "team holiday {day}"),
            Closed::OutOfOffice { until } => write!(f, "out of office until {until}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayOff {
    Holiday,
    OutOfOffice,
}

/// Working hours (or none: always on), with days off, in one time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub tz: TimeZone,
    hours: Option<WeeklyHours>,
    days_off: Vec<(Date, Date, DayOff)>,
}

impl Schedule {
    pub fn new(tz: TimeZone, hours: Option<WeeklyHours>) -> Self {
        Schedule {
            tz,
            hours,
            days_off: Vec::new(),
        }
    }

    pub fn with_holidays(mut self, days: impl IntoIterator<Item = (Date, Date)>) -> Self {
        self.days_off
            .extend(days.into_iter().map(|(a, b)| (a, b, DayOff::Holiday)));
        self
    }

    pub fn with_leave(mut self, days: impl IntoIterator<Item = (Date, Date)>) -> Self {
        self.days_off
            .extend(days.into_iter().map(|(a, b)| (a, b, DayOff::OutOfOffice)));
        self
    }

    /// Whether anything constrains this schedule (hours or days off).
    pub fn is_always_open(&self) -> bool {
        self.hours.is_none() && self.days_off.is_empty()
    }

    fn day_off(&self, date: Date) -> Option<Closed> {
        // Leave wins over a holiday in the message: it is the longer-lived reason.
        let mut found = None;
        for (from, to, kind) in &self.days_off {
            if *from <= date && date <= *to {
                match kind {
                    DayOff::OutOfOffice => return Some(Closed::OutOfOffice { until: *to }),
                    DayOff::Holiday => found = Some(Closed::Holiday(date)),
                }
            }
        }
        found
    }

    /// `None` when working at `at`, else why not.
    pub fn closed_at(&self, at: Timestamp) -> Option<Closed> {
        let local = at.to_zoned(self.tz.clone());
        if let Some(closed) = self.day_off(local.date()) {
            return Some(closed);
        }
        let hours = self.hours.as_ref()?;
        let time = local.time();
        let open = hours
            .spans(local.date())
            .iter()
            .any(|(start, end)| *start <= time && (time < *end || *end == Time::MAX));
        (!open).then_some(Closed::OffHours)
    }

    /// The first instant at or after `at` when this schedule is open, looking ahead at most a
    /// year (a schedule closed for longer has no opening worth waiting for).
    pub fn next_opening(&self, at: Timestamp) -> Option<Timestamp> {
        if self.closed_at(at).is_none() {
            return Some(at);
        }
        let local = at.to_zoned(self.tz.clone());
        let mut date = local.date();
        for _ in 0..370 {
            if self.day_off(date).is_none() {
                let starts: Vec<Time> = match &self.hours {
                    None => vec![Time::midnight()],
                    Some(hours) => hours.spans(date).iter().map(|(start, _)| *start).collect(),
                };
                for start in starts {
                    let Ok(opening) = date.to_datetime(start).to_zoned(self.tz.clone()) else {
                        continue;
                    };
                    if opening.timestamp() > at {
                        return Some(opening.timestamp());
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// How much of `[from, to)` this schedule is open: the working time between two instants,
    /// so a lead captured on Friday evening and answered on Monday morning counts the minutes
    /// of Monday only. Spans are read in the schedule's time zone day by day, so a day that
    /// loses or gains an hour to daylight saving counts what the wall clock really ran. Zero
    /// when `to` is not after `from`; an always-open schedule counts the whole interval.
    pub fn open_duration(&self, from: Timestamp, to: Timestamp) -> SignedDuration {
        if to <= from {
            return SignedDuration::ZERO;
        }
        if self.is_always_open() {
            return to.duration_since(from);
        }
        let tz = &self.tz;
        let instant = |date: Date, time: Time| {
            date.to_datetime(time)
                .to_zoned(tz.clone())
                .ok()
                .map(|z| z.timestamp())
        };
        let mut total = SignedDuration::ZERO;
        let mut date = from.to_zoned(tz.clone()).date();
        let last = to.to_zoned(tz.clone()).date();
        // Bounded: ten years of days at most, whatever the timestamps say.
        for _ in 0..3660 {
            if date > last {
                break;
            }
            let Ok(next_day) = date.tomorrow() else { break };
            if self.day_off(date).is_none() {
                let spans: Vec<(Time, Option<Time>)> = match &self.hours {
                    None => vec![(Time::midnight(), None)],
                    Some(hours) => hours
                        .spans(date)
                        .iter()
                        .map(|(start, end)| (*start, (*end != Time::MAX).then_some(*end)))
                        .collect(),
                };
                for (start, end) in spans {
                    // `None`: the span runs to midnight (24:00), the next day's start.
                    let end = match end {
                        Some(end) => instant(date, end),
                        None => instant(next_day, Time::midnight()),
                    };
                    let (Some(open), Some(close)) = (instant(date, start), end) else {
                        continue;
                    };
                    let (a, b) = (open.max(from), close.min(to));
                    if b > a {
                        total += b.duration_since(a);
                    }
                }
            }
            date = next_day;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn berlin_office() -> Schedule {
        let hours = WeeklyHours::parse(&["mon-fri 09:00-17:30".into()]).expect("hours");
        Schedule::new(parse_time_zone("Europe/Berlin").expect("tz"), Some(hours))
    }

    #[test]
    fn hours_are_read_in_the_schedules_own_time_zone() {
        let office = berlin_office();
        // Monday 2026-11-23 08:30 UTC is 09:30 in Berlin.
        assert_eq!(office.closed_at(at("2026-11-23T08:30:00Z")), None);
        // 07:30 UTC is 08:30 in Berlin: not yet.
        assert_eq!(
            office.closed_at(at("2026-11-23T07:30:00Z")),
            Some(Closed::OffHours)
        );
        assert_eq!(
            office.next_opening(at("2026-11-23T07:30:00Z")),
            Some(at("2026-11-23T08:00:00Z"))
        );
    }

    #[test]
    fn the_next_opening_skips_the_weekend_and_holidays() {
        let office = berlin_office().with_holidays([parse_date_range("2026-11-30").expect("date")]);
        // Friday 18:00 Berlin → Monday is a holiday → Tuesday 09:00 Berlin.
        assert_eq!(
            office.next_opening(at("2026-11-27T17:00:00Z")),
            Some(at("2026-12-01T08:00:00Z"))
        );
        assert_eq!(
            office.closed_at(at("2026-11-30T10:00:00Z")),
            Some(Closed::Holiday("2026-11-30".parse().expect("date")))
        );
    }

    #[test]
    fn leave_names_its_last_day() {
        let office = berlin_office()
            .with_leave([parse_date_range("2026-11-23..2026-11-27").expect("range")]);
        assert_eq!(
            office.closed_at(at("2026-11-24T10:00:00Z")),
            Some(Closed::OutOfOffice {
                until: "2026-11-27".parse().expect("date")
            })
        );
    }

    #[test]
    fn open_duration_counts_only_working_time_across_a_weekend() {
        let office = berlin_office();
        // Friday 2026-11-27 17:00 Berlin (16:00 UTC) to Monday 10:00 Berlin (09:00 UTC):
        // 30 minutes on Friday, an hour on Monday, nothing on the weekend.
        assert_eq!(
            office.open_duration(at("2026-11-27T16:00:00Z"), at("2026-11-30T09:00:00Z")),
            SignedDuration::from_mins(90)
        );
        // Within one opening: the wall-clock difference.
        assert_eq!(
            office.open_duration(at("2026-11-23T09:00:00Z"), at("2026-11-23T09:07:30Z")),
            SignedDuration::from_secs(450)
        );
        // Backwards or empty: nothing.
        assert_eq!(
            office.open_duration(at("2026-11-23T10:00:00Z"), at("2026-11-23T09:00:00Z")),
            SignedDuration::ZERO
        );
        // A holiday counts nothing: Monday off, so Friday 17:00 → Tuesday 10:00 is 30 + 60.
        let office = office.with_holidays([parse_date_range("2026-11-30").expect("date")]);
        assert_eq!(
            office.open_duration(at("2026-11-27T16:00:00Z"), at("2026-12-01T09:00:00Z")),
            SignedDuration::from_mins(90)
        );
    }

    #[test]
    fn open_duration_follows_a_daylight_saving_change() {
        let tz = parse_time_zone("Europe/Berlin").expect("tz");
        let daily = WeeklyHours::parse(&["daily 00:00-24:00".into()]).expect("hours");
        let always = Schedule::new(tz.clone(), Some(daily));
        // Sunday 2026-03-29 runs 23 hours in Berlin (02:00 becomes 03:00): midnight CET is
        // 23:00 UTC the day before, the next midnight (CEST) 22:00 UTC.
        assert_eq!(
            always.open_duration(at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z")),
            SignedDuration::from_hours(23)
        );
        // Hours 01:00-05:00 local that Sunday are three hours long.
        let night = WeeklyHours::parse(&["sun 01:00-05:00".into()]).expect("hours");
        let night = Schedule::new(tz.clone(), Some(night));
        assert_eq!(
            night.open_duration(at("2026-03-28T00:00:00Z"), at("2026-03-30T00:00:00Z")),
            SignedDuration::from_hours(3)
        );
        // And in autumn (2026-10-25) the same hours are five hours long.
        assert_eq!(
            night.open_duration(at("2026-10-24T00:00:00Z"), at("2026-10-26T00:00:00Z")),
            SignedDuration::from_hours(5)
        );
        // A schedule without hours but with leave: open all day except the leave.
        let leave =
            Schedule::new(tz, None).with_leave([parse_date_range("2026-11-24").expect("date")]);
        assert_eq!(
            leave.open_duration(at("2026-11-22T23:00:00Z"), at("2026-11-24T23:00:00Z")),
            SignedDuration::from_hours(24)
        );
    }

    #[test]
    fn bad_hours_say_what_is_wrong() {
        let error = WeeklyHours::parse(&["mon-fri 18:00-09:00".into()]).expect_err("night");
        assert!(error.contains("end after it starts"), "{error}");
        let error = WeeklyHours::parse(&["weekdays 09:00-17:00".into()]).expect_err("day");
        assert!(error.contains("is not a day"), "{error}");
        assert!(parse_date_range("2026-12-31..2026-12-01").is_err());
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }
}
