//! Which columns a record list shows: Leads' own, or the first sensible fields of a module's metadata; and
//! the list's rows, one text per column.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use smallvec::SmallVec;
use sonic_rs::Value;

use super::paging::SortField;
use super::values::{TimeDetail, display_value_with, join_texts};
use crate::zoho::crm::{CrmField, Record};

/// Columns picked from the fields metadata for modules without their own defaults.
const MAX_COLUMNS: usize = 5;

/// A column of the list: its heading and the fields whose values it joins (a lead's name is two fields).
#[derive(Debug, Clone)]
pub struct Column {
    pub label: String,
    /// The label escaped for HTML once, for the heading and every cell's `data-label`.
    pub label_html: EscapedHtml,
    pub fields: Vec<String>,
    /// The order Zoho can sort the list in by this column (`id`, `Created_Time` or `Modified_Time` alone), if
    /// any: its heading is then a link that sorts.
    pub sort_field: Option<SortField>,
}

impl Column {
    fn new(label: String, fields: Vec<String>) -> Column {
        Column {
            label_html: EscapedHtml::of(&label),
            sort_field: SortField::of_column(&fields),
            label,
            fields,
        }
    }
}

/// Text escaped for HTML: the template writes it as it is. Made only by [`HtmlText::escaped`] and
/// [`EscapedHtml::of`], so it cannot hold anything unescaped.
///
/// A cell's text is escaped when the row is made: still lent from Zoho's answer when it holds nothing to escape
/// (most texts: names, emails, phones, dates), escaped as the templates escape into a copy when it does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HtmlText<'a>(Cow<'a, str>);

/// Text escaped for HTML once and kept (a column's label, written in its heading and in every cell).
pub type EscapedHtml = HtmlText<'static>;

impl EscapedHtml {
    /// `text` escaped as the templates escape every other text.
    pub fn of(text: &str) -> EscapedHtml {
        HtmlText(Cow::Owned(escape_html(text)))
    }
}

impl<'a> HtmlText<'a> {
    /// `text`, escaped (lent as it is when nothing in it needs escaping).
    pub fn escaped(text: Cow<'a, str>) -> HtmlText<'a> {
        if has_html_special(&text) {
            HtmlText(Cow::Owned(escape_html(&text)))
        } else {
            HtmlText(text)
        }
    }

    /// The escaped text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the text is still Zoho's answer's own, not a copy.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }
}

fn escape_html(text: &str) -> String {
    let escaped = askama::filters::escape(text, askama::filters::Html).map(|e| e.to_string());
    escaped.unwrap_or_else(|never| match never {})
}

impl PartialEq<&str> for HtmlText<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for HtmlText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl askama::filters::HtmlSafe for HtmlText<'_> {}

/// Written as it is, without `Display`'s formatting machinery: a list writes some 150 of them.
impl askama::FastWritable for HtmlText<'_> {
    fn write_into(&self, dest: &mut dyn fmt::Write, _: &dyn askama::Values) -> askama::Result<()> {
        Ok(dest.write_str(&self.0)?)
    }
}

/// Whether `text` holds a character HTML escaping replaces (`"`, `&`, `'`, `<`, `>`), eight bytes at a time: a
/// byte equal to one of them is a zero byte of the word XORed with it, found by the classic
/// `(x - 0x01…) & !x & 0x80…` test, which has no false positives for "is there any". The last few bytes are
/// read as a word padded with zeros (a zero byte is no special character).
fn has_html_special(text: &str) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let special = |word: u64| {
        let zero_where = |c: u8| {
            let y = word ^ (ONES * u64::from(c));
            y.wrapping_sub(ONES) & !y
        };
        (zero_where(b'"')
            | zero_where(b'&')
            | zero_where(b'\'')
            | zero_where(b'<')
            | zero_where(b'>'))
            & HIGHS
            != 0
    };
    let mut words = text.as_bytes().chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        if special(u64::from_ne_bytes(bytes)) {
            return true;
        }
    }
    let rest = words.remainder();
    let mut bytes = [0; 8];
    bytes[..rest.len()].copy_from_slice(rest);
    special(u64::from_ne_bytes(bytes))
}

/// Leads are student enquiries: who, how to reach them, where they stand, where they came from, when. Made
/// once: every Leads page shows them.
pub(super) fn lead_columns() -> &'static [Column] {
    static LEAD_COLUMNS: LazyLock<Vec<Column>> = LazyLock::new(|| {
        let column = |label: &str, fields: &[&str]| {
            Column::new(
                label.to_owned(),
                fields.iter().map(|f| (*f).to_owned()).collect(),
            )
        };
        vec![
            column("Name", &["First_Name", "Last_Name"]),
            column("Email", &["Email"]),
            column("Phone", &["Phone"]),
            column("Status", &["Lead_Status"]),
            column("Source", &["Lead_Source"]),
            column("Created", &["Created_Time"]),
        ]
    });
    &LEAD_COLUMNS
}

/// Data types worth a column in a list; long text, files and internal fields are not.
const LISTABLE_TYPES: &[&str] = &[
    "text",
    "email",
    "phone",
    "picklist",
    "date",
    "datetime",
    "integer",
    "bigint",
    "double",
    "currency",
    "percent",
    "website",
    "lookup",
    "ownerlookup",
    "boolean",
    "autonumber",
];

pub(super) fn field_label(field: &CrmField) -> String {
    field
        .display_label
        .clone()
        .or_else(|| field.field_label.clone())
        .unwrap_or_else(|| field.api_name.replace('_', " "))
}

/// Fields a list never shows: the name's parts (the name column has them), and bookkeeping.
const NOT_LISTED: &[&str] = &[
    "id",
    "First_Name",
    "Last_Name",
    "Salutation",
    "Modified_Time",
    "Tag",
    "Record_Image",
    "Layout",
];

/// The first few sensible columns from a module's fields metadata: the record's name first (a full name, a
/// `Name`, a `…_Name` of its own, else the last name), then listable fields in Zoho's order, people
/// (owners) last.
pub(super) fn columns_from_fields(fields: &[CrmField]) -> Vec<Column> {
    let data_type = |field: &CrmField| field.data_type.clone().unwrap_or_default();
    let listable = |field: &&CrmField| {
        !NOT_LISTED.contains(&field.api_name.as_str())
            && (field.data_type.is_none() || LISTABLE_TYPES.contains(&data_type(field).as_str()))
    };
    let own_name = |field: &&CrmField| {
        field.api_name.ends_with("_Name")
            && !NOT_LISTED.contains(&field.api_name.as_str())
            && !data_type(field).contains("lookup")
    };
    let named = |wanted: &str| fields.iter().find(|f| f.api_name == wanted);
    let name = ["Full_Name", "Name"]
        .iter()
        .find_map(|wanted| named(wanted))
        .or_else(|| fields.iter().find(own_name));
    // Without a name field of its own, a person's module is named by first and last name, as Zoho shows it.
    let first_and_last = match (name, named("First_Name"), named("Last_Name")) {
        (None, Some(first), Some(last)) => Some((first, last)),
        _ => None,
    };
    let name = name.or_else(|| named("Last_Name"));
    let mut chosen: Vec<&CrmField> = name.into_iter().collect();
    let is_person = |field: &&CrmField| data_type(field) == "ownerlookup";
    let rest = fields
        .iter()
        .filter(listable)
        .filter(|f| !is_person(f))
        .chain(fields.iter().filter(listable).filter(is_person));
    for field in rest {
        if chosen.len() >= MAX_COLUMNS {
            break;
        }
        if !chosen.iter().any(|c| c.api_name == field.api_name) {
            chosen.push(field);
        }
    }
    chosen
        .into_iter()
        .map(|field| match first_and_last {
            Some((first, last)) if field.api_name == last.api_name => Column::new(
                "Name".to_owned(),
                vec![first.api_name.clone(), last.api_name.clone()],
            ),
            _ => Column::new(field_label(field), vec![field.api_name.clone()]),
        })
        .collect()
}

/// Columns a row holds without an allocation of its own (Leads have six, other modules at most five).
const INLINE_CELLS: usize = 6;

/// One row of the list: the record's id (for its link) and one text per column, borrowed from the record where
/// they can be.
pub struct Row<'a> {
    pub id: HtmlText<'a>,
    pub cells: SmallVec<[HtmlText<'a>; INLINE_CELLS]>,
}

pub(super) fn row<'a>(record: &'a Record, columns: &[Column], wanted: &[&str]) -> Row<'a> {
    // `wanted` is `id`, then each column's fields in order. One walk over the record's entries finds them all
    // (a lookup per field would walk the entries once per field); names are told apart by length and first byte
    // before they are compared.
    let mut values: SmallVec<[Option<&Value>; INLINE_CELLS + 2]> =
        smallvec::smallvec![None; wanted.len()];
    for (name, value) in record.iter() {
        let (length, first) = (name.len(), name.as_bytes().first());
        for (slot, field) in values.iter_mut().zip(wanted) {
            if field.len() == length && field.as_bytes().first() == first && *field == name {
                *slot = Some(value);
            }
        }
    }
    let display = |value: Option<&'a Value>| {
        value.map_or(Cow::Borrowed(""), |value| {
            display_value_with(value, TimeDetail::Day)
        })
    };
    let id = HtmlText::escaped(display(values[0]));
    let mut cells = SmallVec::with_capacity(columns.len());
    let mut at = 1;
    for column in columns {
        let fields = column.fields.len();
        let texts = values.get(at..at + fields).unwrap_or_default();
        at += fields;
        // A column joins its fields' texts with spaces (a lead's name is first and last name).
        cells.push(HtmlText::escaped(match texts {
            [only] => display(*only),
            _ => join_texts(texts.iter().map(|value| display(*value)), " "),
        }));
    }
    Row { id, cells }
}

/// The fields a list asks Zoho for: `id`, then each column's fields in order (what [`row`] expects).
pub(super) fn wanted_fields(columns: &[Column]) -> Vec<&str> {
    std::iter::once("id")
        .chain(
            columns
                .iter()
                .flat_map(|c| c.fields.iter().map(String::as_str)),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(api_name: &str, label: &str, data_type: &str) -> CrmField {
        serde_json::from_value(serde_json::json!({
            "api_name": api_name, "display_label": label, "data_type": data_type
        }))
        .expect("field")
    }

    #[test]
    fn columns_start_with_the_full_name_and_skip_its_parts_and_owners_first() {
        let fields = [
            field("Owner", "Contact Owner", "ownerlookup"),
            field("First_Name", "First Name", "text"),
            field("Last_Name", "Last Name", "text"),
            field("Full_Name", "Contact Name", "text"),
            field("Email", "Email", "email"),
            field("Description", "Description", "textarea"),
            field("Phone", "Phone", "phone"),
            field("id", "Record Id", "bigint"),
        ];
        let labels: Vec<String> = columns_from_fields(&fields)
            .into_iter()
            .map(|c| c.label)
            .collect();
        assert_eq!(labels, ["Contact Name", "Email", "Phone", "Contact Owner"]);
    }

    #[test]
    fn a_module_without_a_name_field_shows_first_and_last_name_in_its_name_column() {
        let fields = [
            field("Owner", "Contact Owner", "ownerlookup"),
            field("First_Name", "First Name", "text"),
            field("Last_Name", "Last Name", "text"),
            field("Email", "Email", "email"),
        ];
        let columns = columns_from_fields(&fields);
        assert_eq!(columns[0].label, "Name");
        assert_eq!(columns[0].fields, ["First_Name", "Last_Name"]);
        let wanted = wanted_fields(&columns);
        let record: Record = sonic_rs::from_str(
            r#"{"id":"9","Last_Name":"Raman","First_Name":"Kavya","Email":"kavya@zylker.example"}"#,
        )
        .unwrap();
        let row = row(&record, &columns, &wanted);
        assert_eq!(row.cells[0], "Kavya Raman");
        assert_eq!(row.cells[1], "kavya@zylker.example");
        // Only the last name: the column still shows it.
        let fields = [field("Last_Name", "Last Name", "text")];
        assert_eq!(columns_from_fields(&fields)[0].label, "Last Name");
    }

    #[test]
    fn a_lookup_named_like_a_name_is_not_the_record_name() {
        let fields = [
            field("Account_Name", "Account Name", "lookup"),
            field("Deal_Name", "Deal Name", "text"),
        ];
        assert_eq!(columns_from_fields(&fields)[0].fields, ["Deal_Name"]);
    }

    #[test]
    fn a_column_joins_the_texts_of_its_fields_that_are_not_empty() {
        let columns = lead_columns();
        let record: Record = sonic_rs::from_str(
            r#"{"id":"7","First_Name":"","Last_Name":"Raman","Email":null,"Created_Time":"2026-10-09T14:49:00+05:30"}"#,
        )
        .unwrap();
        let wanted = wanted_fields(columns);
        let only_last = row(&record, columns, &wanted);
        assert_eq!(only_last.id, "7");
        assert_eq!(
            only_last.cells.as_slice(),
            ["Raman", "", "", "", "", "9 Oct 2026"]
        );
        assert!(
            only_last.cells[0].is_borrowed(),
            "a single text is the record's own, not a copy"
        );
        // The column's order wins over the record's.
        let record: Record =
            sonic_rs::from_str(r#"{"Last_Name":"O'Brien","First_Name":"Søren"}"#).unwrap();
        // Escaped for HTML when the row is made.
        assert_eq!(row(&record, columns, &wanted).cells[0], "Søren O&#39;Brien");
        assert_eq!(row(&record, columns, &wanted).id, "");
    }

    #[test]
    fn cells_are_escaped_as_the_templates_escape_and_lent_when_nothing_needs_it() {
        for text in [
            "",
            "Søren O'Brien",
            "a<b",
            "fees & dues",
            "\"quoted\"",
            "12345678>",
            "1234567<9",
            "x".repeat(40).as_str(),
            "long text with an ampersand & at byte twenty",
            "kavya.raman@zylker.example",
            "+91 98400 12345",
        ] {
            let cell = HtmlText::escaped(Cow::Borrowed(text));
            assert_eq!(cell.as_str(), EscapedHtml::of(text).to_string(), "{text}");
            assert_eq!(cell.is_borrowed(), cell.as_str() == text, "{text}");
        }
        // Every byte, at every place of a word and of the padded rest.
        for at in 0..13 {
            for byte in 0..=255u8 {
                let mut bytes = *b"abcdefghijklm";
                bytes[at] = byte;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                assert_eq!(
                    has_html_special(&text),
                    EscapedHtml::of(&text).to_string() != text,
                    "{byte} at {at}"
                );
            }
        }
    }

    #[test]
    fn labels_are_escaped_once_as_the_templates_escape() {
        let column = Column::new("Fees & <dues> \"due\" 'now'".into(), vec!["Fees".into()]);
        assert_eq!(
            column.label_html.to_string(),
            "Fees &#38; &#60;dues&#62; &#34;due&#34; &#39;now&#39;"
        );
    }

    #[test]
    fn a_field_in_two_columns_shows_in_both() {
        let columns = vec![
            Column::new("Contact".into(), vec!["Email".into(), "Phone".into()]),
            Column::new("Email".into(), vec!["Email".into()]),
        ];
        let wanted = wanted_fields(&columns);
        assert_eq!(wanted, ["id", "Email", "Phone", "Email"]);
        let record: Record =
            sonic_rs::from_str(r#"{"Phone":"+91 1","Email":"a@b.example","id":"3"}"#).unwrap();
        let row = row(&record, &columns, &wanted);
        assert_eq!(row.id, "3");
        assert_eq!(row.cells.as_slice(), ["a@b.example +91 1", "a@b.example"]);
    }
}
