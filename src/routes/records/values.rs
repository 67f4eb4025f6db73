//! CRM values as a person reads them: lookups by name, times in the org's own offset, `Yes`/`No`.

use std::borrow::Cow;

use sonic_rs::{Value, ValueRef};
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

/// The non-empty texts joined by `separator`; a single one is passed through as it is.
pub(super) fn join_texts<'a>(
    texts: impl Iterator<Item = Cow<'a, str>>,
    separator: &str,
) -> Cow<'a, str> {
    let mut joined = Cow::Borrowed("");
    for text in texts.filter(|text| !text.is_empty()) {
        if joined.is_empty() {
            joined = text;
        } else {
            let owned = joined.to_mut();
            owned.push_str(separator);
            owned.push_str(&text);
        }
    }
    joined
}

fn display_text(text: &str, detail: TimeDetail) -> Cow<'_, str> {
    // Most values are names, emails and phones: only what is shaped like `2026-10-09T14:49:00+05:30` is parsed.
    let bytes = text.as_bytes();
    let looks_like_a_time = (20..=40).contains(&bytes.len())
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't');
    if !looks_like_a_time {
        return Cow::Borrowed(text);
    }
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
            display_value(&json!("<b>")),
            "<b>",
            "escaping is the template's job"
        );
    }
}
