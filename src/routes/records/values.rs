//! CRM values as a person reads them: lookups by name, times in the org's own offset, `Yes`/`No`.

use std::borrow::Cow;

use sonic_rs::{JsonValueTrait, Value, ValueRef};

use super::columns::push_escaped;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// How much of a date and time to show: a list shows the day, a record page the minute too.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeDetail {
    Day,
    Minute,
}

/// A value as a person reads it: lookups by name, times in the org's own offset, nothing as an em dash.
pub fn display_value(value: &Value) -> String {
    display_value_with(value, TimeDetail::Minute).into_owned()
}

/// [`display_value`], borrowing from the value where the text is the value's own (most are).
pub(super) fn display_value_with(value: &Value, detail: TimeDetail) -> Cow<'_, str> {
    // Most values are texts: read as one at once, without the general match below.
    if let Some(text) = value.as_str() {
        return display_text(text, detail);
    }
    match value.as_ref() {
        ValueRef::Null => Cow::Borrowed(""),
        ValueRef::Bool(true) => Cow::Borrowed("Yes"),
        ValueRef::Bool(false) => Cow::Borrowed("No"),
        ValueRef::Number(number) => Cow::Owned(number.to_string()),
        ValueRef::String(text) => display_text(text, detail),
        ValueRef::Array(items) => join_texts(
            items.iter().map(|item| display_value_with(item, detail)),
            ", ",
        ),
        ValueRef::Object(object) => object
            .get(&"name")
            .or_else(|| object.get(&"display_value"))
            .map(|value| display_value_with(value, detail))
            .unwrap_or_default(),
    }
}

/// The non-empty texts joined by `separator`; a single one is passed through as it is, and a join is written
/// into a string made at its full length once.
fn join_texts<'a>(texts: impl Iterator<Item = Cow<'a, str>>, separator: &str) -> Cow<'a, str> {
    let mut texts: smallvec::SmallVec<[Cow<'a, str>; 4]> =
        texts.filter(|text| !text.is_empty()).collect();
    if texts.len() <= 1 {
        return texts.pop().unwrap_or_default();
    }
    let length =
        texts.iter().map(|text| text.len()).sum::<usize>() + separator.len() * (texts.len() - 1);
    let mut joined = String::with_capacity(length);
    for (at, text) in texts.iter().enumerate() {
        if at > 0 {
            joined.push_str(separator);
        }
        joined.push_str(text);
    }
    Cow::Owned(joined)
}

/// Appends `value` as [`display_value_with`] shows it to `html`, escaped for HTML; a date in Zoho's own shape is
/// written straight from its digits, without a string of its own.
pub(super) fn push_display(html: &mut String, value: &Value, detail: TimeDetail) {
    match value.as_str() {
        Some(text) => match zoho_time(text) {
            Some(when) => when.write_into(html, detail),
            None => push_escaped(html, &display_text(text, detail)),
        },
        None => push_escaped(html, &display_value_with(value, detail)),
    }
}

/// `text` as a time when it is exactly as Zoho writes one (see [`ZohoTime::parse`]).
fn zoho_time(text: &str) -> Option<ZohoTime> {
    looks_like_a_time(text.as_bytes())
        .then(|| ZohoTime::parse(text.as_bytes()))
        .flatten()
}

/// Whether `bytes` are shaped like a time, `2026-10-09T14:49:00+05:30`: only those are parsed, because most
/// values are names, emails and phones.
fn looks_like_a_time(bytes: &[u8]) -> bool {
    (20..=40).contains(&bytes.len())
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't')
}

fn display_text(text: &str, detail: TimeDetail) -> Cow<'_, str> {
    if !looks_like_a_time(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    if let Some(when) = ZohoTime::parse(text.as_bytes()) {
        let mut shown = String::with_capacity(20);
        when.write_into(&mut shown, detail);
        return Cow::Owned(shown);
    }
    // Fractional seconds, a leap second, or not a time after all: the general parser decides.
    let rfc3339 = time::format_description::well_known::Rfc3339;
    let Ok(when) = time::OffsetDateTime::parse(text, &rfc3339) else {
        return Cow::Borrowed(text);
    };
    let format = match detail {
        TimeDetail::Day => DAY,
        TimeDetail::Minute => MINUTE,
    };
    when.format(format).map_or(Cow::Borrowed(text), Cow::Owned)
}

/// A time as Zoho writes every one of them, `2026-10-09T14:49:00+05:30` (or `Z`): read straight from its
/// digits, because a page shows up to twenty of them and the general RFC 3339 parser costs more than the rest
/// of the cell. Shown in its own offset, the org's, as the general parser's result would be.
struct ZohoTime {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl ZohoTime {
    /// The time, when `bytes` is exactly `YYYY-MM-DDTHH:MM:SS` then `Z` or `±HH:MM`, every part in range;
    /// anything else (fractions, leap seconds, malformed) is `None`, for the general parser.
    fn parse(bytes: &[u8]) -> Option<ZohoTime> {
        let number = |at: usize, len: usize| -> Option<u32> {
            bytes.get(at..at + len)?.iter().try_fold(0u32, |n, b| {
                b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
            })
        };
        let offset_ok = match bytes.len() {
            20 => bytes[19] == b'Z',
            25 => {
                matches!(bytes[19], b'+' | b'-')
                    && bytes[22] == b':'
                    && number(20, 2)? < 24
                    && number(23, 2)? < 60
            }
            _ => false,
        };
        if !offset_ok || bytes[10] != b'T' || bytes[13] != b':' || bytes[16] != b':' {
            return None;
        }
        let (year, month, day) = (number(0, 4)?, number(5, 2)?, number(8, 2)?);
        let (hour, minute, second) = (number(11, 2)?, number(14, 2)?, number(17, 2)?);
        let length = time::Month::try_from(u8::try_from(month).ok()?)
            .ok()?
            .length(i32::try_from(year).ok()?);
        if day < 1 || day > u32::from(length) || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        Some(ZohoTime {
            year: u16::try_from(year).ok()?,
            month: u8::try_from(month).ok()?,
            day: u8::try_from(day).ok()?,
            hour: u8::try_from(hour).ok()?,
            minute: u8::try_from(minute).ok()?,
        })
    }

    /// Appends `9 Oct 2026`, or `9 Oct 2026, 14:49` with the minute: what [`DAY`] and [`MINUTE`] write.
    fn write_into(&self, text: &mut String, detail: TimeDetail) {
        push_digits(text, self.day.into(), 1);
        text.push(' ');
        text.push_str(MONTHS[usize::from(self.month - 1)]);
        text.push(' ');
        push_digits(text, self.year, 4);
        if detail == TimeDetail::Minute {
            text.push_str(", ");
            push_digits(text, self.hour.into(), 2);
            text.push(':');
            push_digits(text, self.minute.into(), 2);
        }
    }
}

/// `number` in decimal, zero-padded to `width` digits (a page writes twenty dates; `write!` costs more than the
/// rest of the cell).
fn push_digits(text: &mut String, number: u16, width: usize) {
    let mut digits = [b'0'; 5];
    let mut at = digits.len();
    let mut left = number;
    loop {
        at -= 1;
        digits[at] = b'0' + (left % 10) as u8;
        left /= 10;
        if left == 0 {
            break;
        }
    }
    at = at.min(digits.len() - width.min(digits.len()));
    for digit in &digits[at..] {
        text.push(char::from(*digit));
    }
}

/// `9 Oct 2026`: a date as a list shows it.
const DAY: &[BorrowedFormatItem<'_>] =
    format_description!("[day padding:none] [month repr:short] [year]");
/// `9 Oct 2026, 14:49`: a date and time as a record page shows it.
const MINUTE: &[BorrowedFormatItem<'_>] =
    format_description!("[day padding:none] [month repr:short] [year], [hour]:[minute]");

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_rs::json;

    #[test]
    fn values_read_as_text() {
        assert_eq!(
            display_value(&json!({"name": "Priya Raman", "id": "1"})),
            "Priya Raman"
        );
        assert_eq!(display_value(&json!(null)), "");
        assert_eq!(display_value(&json!(true)), "Yes");
        assert_eq!(display_value(&json!(["a", "b"])), "a, b");
        assert_eq!(
            display_value(&json!("2026-10-09T14:49:00+05:30")),
            "9 Oct 2026, 14:49"
        );
        assert_eq!(
            display_value_with(&json!("2026-10-09T14:49:00+05:30"), TimeDetail::Day),
            "9 Oct 2026"
        );
        assert_eq!(
            display_value(&json!("2026-03-05T09:04:00Z")),
            "5 Mar 2026, 09:04"
        );
        assert_eq!(
            display_value(&json!("2026-10-09T14:49:00.250+05:30")),
            "9 Oct 2026, 14:49",
            "fractions go to the general parser"
        );
        assert_eq!(
            display_value(&json!("2026-02-30T14:49:00+05:30")),
            "2026-02-30T14:49:00+05:30",
            "a day the month does not have is shown as written"
        );
        assert_eq!(
            display_value(&json!("<b>")),
            "<b>",
            "escaping is the template's job"
        );
    }
}

#[cfg(test)]
mod times {
    use super::*;

    /// The digits' reading and the general parser agree on every Zoho-shaped time they both take, and the
    /// digits' reading takes none the general parser refuses.
    #[test]
    fn zoho_times_read_from_their_digits_as_the_general_parser_reads_them() {
        let rfc3339 = time::format_description::well_known::Rfc3339;
        let mut checked = 0;
        for year in [1999, 2000, 2024, 2026, 2100] {
            for month in 0..=13u32 {
                for day in [0, 1, 9, 28, 29, 30, 31, 32] {
                    for (hour, minute, second) in [
                        (0, 0, 0),
                        (9, 4, 59),
                        (23, 59, 59),
                        (24, 0, 0),
                        (12, 60, 0),
                        (12, 0, 60),
                    ] {
                        for offset in ["Z", "+05:30", "-08:00", "+24:00", "+05:60", "+0530"] {
                            let text = format!(
                                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{offset}"
                            );
                            let general = time::OffsetDateTime::parse(&text, &rfc3339).ok();
                            let digits = ZohoTime::parse(text.as_bytes());
                            if second == 60 {
                                assert!(
                                    digits.is_none(),
                                    "{text}: leap seconds go to the general parser"
                                );
                                continue;
                            }
                            match (general, digits) {
                                (None, None) => {}
                                (Some(general), Some(digits)) => {
                                    for (detail, format) in
                                        [(TimeDetail::Day, DAY), (TimeDetail::Minute, MINUTE)]
                                    {
                                        let mut written = String::new();
                                        digits.write_into(&mut written, detail);
                                        assert_eq!(
                                            written,
                                            general.format(format).unwrap(),
                                            "{text}"
                                        );
                                    }
                                    checked += 1;
                                }
                                (general, digits) => panic!(
                                    "{text}: general parser {:?}, digits {}",
                                    general,
                                    digits.is_some()
                                ),
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 1000, "only {checked} times were in both");
    }
}
