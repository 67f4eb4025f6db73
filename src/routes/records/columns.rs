//! Which columns a record list shows: Leads' own, or the first sensible fields of a module's metadata; and
//! the list's rows, one text per column.

use std::fmt;
use std::sync::LazyLock;

use smallvec::SmallVec;
use sonic_rs::Value;

use super::paging::SortField;
use super::values::{TimeDetail, push_display};
use crate::zoho::crm::{CrmField, Record};

/// Columns picked from the fields metadata for modules without their own defaults.
const MAX_COLUMNS: usize = 5;

/// A column of the list: its heading and the fields whose values it joins (a lead's name is two fields).
#[derive(Debug, Clone)]
pub struct Column {
    pub label: String,
    /// The label escaped for HTML once, for the heading.
    pub label_html: EscapedHtml,
    /// What opens each of the column's cells, `<td data-label="…">` with the escaped label (and a line break
    /// before it), made once.
    cell_open: String,
    pub fields: Vec<String>,
    /// The order Zoho can sort the list in by this column (`id`, `Created_Time` or `Modified_Time` alone), if
    /// any: its heading is then a link that sorts.
    pub sort_field: Option<SortField>,
}

impl Column {
    fn new(label: String, fields: Vec<String>) -> Column {
        let label_html = EscapedHtml::of(&label);
        Column {
            cell_open: format!("\n<td data-label=\"{}\">", label_html.as_str()),
            label_html,
            sort_field: SortField::of_column(&fields),
            label,
            fields,
        }
    }
}

/// Text escaped for HTML once and kept (a column's label): the template writes it as it is. Made only by
/// [`EscapedHtml::of`], so it cannot hold anything unescaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EscapedHtml(String);

impl EscapedHtml {
    /// `text` escaped as the templates escape every other text.
    pub fn of(text: &str) -> EscapedHtml {
        let mut html = String::with_capacity(text.len());
        push_escaped(&mut html, text);
        EscapedHtml(html)
    }

    /// The escaped text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EscapedHtml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl askama::filters::HtmlSafe for EscapedHtml {}

impl askama::FastWritable for EscapedHtml {
    fn write_into(&self, dest: &mut dyn fmt::Write, _: &dyn askama::Values) -> askama::Result<()> {
        Ok(dest.write_str(&self.0)?)
    }
}

/// Appends `text` to `html`, escaped as askama escapes for HTML (`"` `&` `'` `<` `>` as `&#34;` `&#38;` `&#39;`
/// `&#60;` `&#62;`): at once when nothing in it needs escaping, as most texts (names, emails, phones) do not.
pub(super) fn push_escaped(html: &mut String, text: &str) {
    if !has_html_special(text) {
        html.push_str(text);
        return;
    }
    let mut written = 0;
    for (at, byte) in text.bytes().enumerate() {
        let entity = match byte {
            b'"' => "&#34;",
            b'&' => "&#38;",
            b'\'' => "&#39;",
            b'<' => "&#60;",
            b'>' => "&#62;",
            _ => continue,
        };
        // The special characters are ASCII, so `at` is a character boundary.
        html.push_str(&text[written..at]);
        html.push_str(entity);
        written = at + 1;
    }
    html.push_str(&text[written..]);
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

/// A list's rows as HTML (the `<tr>`s of its table body), written straight from Zoho's answer: each text
/// escaped as it is written, dates written from their digits, a column's fields joined in place. A page of
/// rows is one string, so the template writes it at once rather than a few pieces per cell.
#[derive(Debug, Default)]
pub struct RowsHtml {
    html: String,
    count: usize,
}

impl RowsHtml {
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// The rows' HTML.
    pub fn as_str(&self) -> &str {
        &self.html
    }
}

impl fmt::Display for RowsHtml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.html)
    }
}

impl askama::filters::HtmlSafe for RowsHtml {}

impl askama::FastWritable for RowsHtml {
    fn write_into(&self, dest: &mut dyn fmt::Write, _: &dyn askama::Values) -> askama::Result<()> {
        Ok(dest.write_str(&self.html)?)
    }
}

/// Room for a row's texts beside the markup around them (a lead's six are some 100 bytes).
const ROW_TEXT_ROOM: usize = 160;

/// The rows of `records` (about `count` of them), one per record: the record's name (its first column) links to
/// `/crm/{module}/{id}`, an empty name shows as "(no name)" and any other empty cell as a dash. `wanted` is
/// [`wanted_fields`]`(columns)`.
pub(super) fn rows_html<'r>(
    records: impl Iterator<Item = &'r Record>,
    count: usize,
    columns: &[Column],
    wanted: &[&str],
    module: &str,
) -> RowsHtml {
    let made;
    let markup = if module == "Leads" && std::ptr::eq(columns, lead_columns()) {
        lead_markup()
    } else {
        made = RowMarkup::new(columns, module);
        &made
    };
    let fields = FieldIndex::new(wanted);
    let mut html = String::with_capacity(count * (markup.length + ROW_TEXT_ROOM));
    let mut count = 0;
    for record in records {
        count += 1;
        let values = fields.values_in(record);
        html.push_str(&markup.row_start);
        if columns.is_empty() {
            html.push_str(&markup.row_end);
            continue;
        }
        if let Some(id) = values.first().copied().flatten() {
            push_display(&mut html, id, TimeDetail::Day);
        }
        html.push_str("\">");
        let mut at = 1;
        for (index, column) in columns.iter().enumerate() {
            if index > 0 {
                html.push_str(&markup.cell_starts[index - 1]);
            }
            let cell = html.len();
            // A column joins its fields' texts with spaces (a lead's name is first and last name), leaving out
            // the empty ones.
            let texts = values.get(at..at + column.fields.len()).unwrap_or_default();
            at += column.fields.len();
            for value in texts.iter().flatten() {
                let before = html.len();
                if before > cell {
                    html.push(' ');
                }
                let text = html.len();
                push_display(&mut html, value, TimeDetail::Day);
                if html.len() == text {
                    html.truncate(before);
                }
            }
            if html.len() == cell {
                html.push_str(if index == 0 {
                    "(no name)"
                } else {
                    "<span class=\"none\">—</span>"
                });
            }
        }
        html.push_str(&markup.row_end);
    }
    RowsHtml { html, count }
}

/// The markup between a row's texts, made once a page so that a row is written in a few pieces: a row starts
/// with `<tr>`, its first cell and the record's link up to its id; each later cell starts with the end of the
/// cell before it; the row ends with the last cell's end and `</tr>`.
struct RowMarkup {
    row_start: String,
    cell_starts: Vec<String>,
    row_end: String,
    /// The markup's length in a row.
    length: usize,
}

/// The markup of Leads' rows, made once: every Leads page writes it.
fn lead_markup() -> &'static RowMarkup {
    static LEAD_MARKUP: LazyLock<RowMarkup> =
        LazyLock::new(|| RowMarkup::new(lead_columns(), "Leads"));
    &LEAD_MARKUP
}

impl RowMarkup {
    fn new(columns: &[Column], module: &str) -> RowMarkup {
        let cell_end = |index: usize| if index == 0 { "</a></td>" } else { "</td>" };
        let mut row_start = String::from("\n<tr>");
        if let Some(first) = columns.first() {
            row_start.push_str(&first.cell_open);
            row_start.push_str("<a href=\"/crm/");
            push_escaped(&mut row_start, module);
            row_start.push('/');
        }
        let cell_starts: Vec<String> = columns
            .iter()
            .enumerate()
            .skip(1)
            .map(|(index, column)| [cell_end(index - 1), &column.cell_open].concat())
            .collect();
        let last_end = columns.len().checked_sub(1).map_or("", cell_end);
        let row_end = [last_end, "\n</tr>"].concat();
        let length = row_start.len()
            + cell_starts.iter().map(String::len).sum::<usize>()
            + row_end.len()
            + 2;
        RowMarkup {
            row_start,
            cell_starts,
            row_end,
            length,
        }
    }
}

/// Where a list's wanted fields are in a record: which of them (a bit per place in `wanted`) have a name of each
/// length, so that each of a record's entries is compared with the one or two names of its length only.
struct FieldIndex<'w> {
    wanted: &'w [&'w str],
    /// Bit `i` of `by_length[n]`: `wanted[i]` is `n` bytes long; names of [`LONG_NAME`] bytes or more share the
    /// last.
    by_length: [u64; LONG_NAME + 1],
}

/// The length from which names share one place in [`FieldIndex::by_length`].
const LONG_NAME: usize = 32;

impl<'w> FieldIndex<'w> {
    fn new(wanted: &'w [&'w str]) -> FieldIndex<'w> {
        let mut by_length = [0u64; LONG_NAME + 1];
        for (at, name) in wanted.iter().enumerate().take(64) {
            by_length[name.len().min(LONG_NAME)] |= 1 << at;
        }
        FieldIndex { wanted, by_length }
    }

    /// The values of the wanted fields in `record`, in `wanted`'s order (`None` for a field it does not carry),
    /// from one walk over its entries.
    fn values_in<'r>(&self, record: &'r Record) -> SmallVec<[Option<&'r Value>; INLINE_CELLS + 2]> {
        let mut values: SmallVec<[Option<&Value>; INLINE_CELLS + 2]> =
            smallvec::smallvec![None; self.wanted.len()];
        for (name, value) in record.iter() {
            let mut candidates = self.by_length[name.len().min(LONG_NAME)];
            while candidates != 0 {
                let at = candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                if same_name(self.wanted[at].as_bytes(), name.as_bytes()) {
                    values[at] = Some(value);
                }
            }
            // Past 64 wanted fields (no list asks for so many), the rest are compared one by one.
            for (at, field) in self.wanted.iter().enumerate().skip(64) {
                if *field == name {
                    values[at] = Some(value);
                }
            }
        }
        values
    }
}

/// Whether `a` and `b` are the same name: for 4 to 16 bytes (most field names) by two overlapping words of each,
/// without a call to `memcmp` (a page compares some 200 names).
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |text: &[u8], at: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&text[at..at + 8]);
        u64::from_ne_bytes(bytes)
    };
    let half = |text: &[u8], at: usize| {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(&text[at..at + 4]);
        u32::from_ne_bytes(bytes)
    };
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a == b,
    }
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
        let html = rows_of(
            r#"[{"id":"9","Last_Name":"Raman","First_Name":"Kavya","Email":"kavya@zylker.example"}]"#,
            &columns,
            "Contacts",
        );
        assert!(
            html.contains(
                r#"<td data-label="Name"><a href="/crm/Contacts/9">Kavya Raman</a></td>"#
            )
        );
        assert!(html.contains(r#"<td data-label="Email">kavya@zylker.example</td>"#));
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

    /// The rows [`rows_html`] writes for the records of `json` (an array).
    fn rows_of(json: &str, columns: &[Column], module: &str) -> String {
        let records: Vec<Record> = sonic_rs::from_str(json).unwrap();
        let wanted = wanted_fields(columns);
        let rows = rows_html(records.iter(), records.len(), columns, &wanted, module);
        assert_eq!(rows.len(), records.len());
        rows.as_str().to_owned()
    }

    #[test]
    fn a_row_links_its_name_and_joins_the_texts_of_its_fields_that_are_not_empty() {
        let columns = lead_columns();
        let html = rows_of(
            r#"[{"id":"7","First_Name":"","Last_Name":"Raman","Email":null,"Created_Time":"2026-10-09T14:49:00+05:30"}]"#,
            columns,
            "Leads",
        );
        assert_eq!(
            html,
            "\n<tr>\
             \n<td data-label=\"Name\"><a href=\"/crm/Leads/7\">Raman</a></td>\
             \n<td data-label=\"Email\"><span class=\"none\">—</span></td>\
             \n<td data-label=\"Phone\"><span class=\"none\">—</span></td>\
             \n<td data-label=\"Status\"><span class=\"none\">—</span></td>\
             \n<td data-label=\"Source\"><span class=\"none\">—</span></td>\
             \n<td data-label=\"Created\">9 Oct 2026</td>\
             \n</tr>"
        );
        // The column's order wins over the record's; texts are escaped as they are written; a record without a
        // name still links to itself, and one without an id links to the module's address it has.
        let html = rows_of(
            r#"[{"Last_Name":"O'Brien","First_Name":"Søren","id":"8"},{"id":"9","Email":"a&b@x.example"},{"Phone":"1"},{"id":"10","First_Name":"Kavya","Last_Name":""}]"#,
            columns,
            "Leads",
        );
        assert!(html.contains(r#"<a href="/crm/Leads/8">Søren O&#39;Brien</a>"#));
        assert!(html.contains(r#"<a href="/crm/Leads/9">(no name)</a>"#));
        assert!(html.contains(r#"<td data-label="Email">a&#38;b@x.example</td>"#));
        assert!(html.contains(r#"<a href="/crm/Leads/">(no name)</a>"#));
        assert!(html.contains(r#"<a href="/crm/Leads/10">Kavya</a>"#));
        assert_eq!(html.matches("<tr>").count(), 4);
        assert!(rows_html(std::iter::empty(), 0, columns, &[], "Leads").is_empty());
    }

    #[test]
    fn values_that_are_not_texts_are_shown_as_a_person_reads_them() {
        let columns = vec![
            Column::new("Owner".into(), vec!["Owner".into()]),
            Column::new("Paid".into(), vec!["Paid".into(), "Fees".into()]),
            Column::new("Tags".into(), vec!["Tag".into()]),
        ];
        let html = rows_of(
            r#"[{"id":"5","Owner":{"name":"Priya <Admin>","id":"1"},"Paid":true,"Fees":1200.5,"Tag":[{"name":"a"},{"name":"b&c"}]}]"#,
            &columns,
            "Deals",
        );
        assert!(html.contains(r#"<a href="/crm/Deals/5">Priya &#60;Admin&#62;</a>"#));
        assert!(html.contains(r#"<td data-label="Paid">Yes 1200.5</td>"#));
        assert!(html.contains(r#"<td data-label="Tags">a, b&#38;c</td>"#));
    }

    #[test]
    fn texts_are_escaped_as_the_templates_escape() {
        let askama = |text: &str| {
            askama::filters::escape(text, askama::filters::Html)
                .map(|escaped| escaped.to_string())
                .unwrap_or_else(|never| match never {})
        };
        let escaped = |text: &str| {
            let mut html = String::from("before:");
            push_escaped(&mut html, text);
            html.split_off("before:".len())
        };
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
            "<<>>&&''\"\"",
        ] {
            assert_eq!(escaped(text), askama(text), "{text}");
        }
        // Every byte, at every place of a word and of the padded rest.
        for at in 0..13 {
            for byte in 0..=255u8 {
                let mut bytes = *b"abcdefghijklm";
                bytes[at] = byte;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                assert_eq!(
                    has_html_special(&text),
                    askama(&text) != text,
                    "{byte} at {at}"
                );
                assert_eq!(escaped(&text), askama(&text), "{byte} at {at}");
            }
        }
    }

    #[test]
    fn fields_are_found_whatever_their_length_and_however_many_are_wanted() {
        let long = "Zylker_Course_Enrolment_Reference_Code";
        let longer = "Zylker_Course_Enrolment_Reference_Code_2";
        let mut columns = vec![
            Column::new("Name".into(), vec!["Name".into()]),
            Column::new("Code".into(), vec![long.into()]),
            Column::new("Code 2".into(), vec![longer.into()]),
        ];
        // More fields than the index has bits for.
        for n in 0..70 {
            columns.push(Column::new(format!("F{n}"), vec![format!("F{n}")]));
        }
        let html = rows_of(
            &format!(
                r#"[{{"id":"1","Name":"A","{longer}":"two","{long}":"one","F3":"three","F69":"last"}}]"#
            ),
            &columns,
            "Courses",
        );
        assert!(html.contains(r#"<td data-label="Code">one</td>"#), "{html}");
        assert!(html.contains(r#"<td data-label="Code 2">two</td>"#));
        assert!(html.contains(r#"<td data-label="F3">three</td>"#));
        assert!(html.contains(r#"<td data-label="F69">last</td>"#));
        assert!(html.contains(r#"<td data-label="F68"><span class="none">—</span></td>"#));
    }

    #[test]
    fn names_are_the_same_only_when_every_byte_is() {
        let names = [
            "",
            "i",
            "id",
            "ID",
            "abc",
            "Name",
            "Email",
            "Phone",
            "Emails",
            "Last_Name",
            "First_Name",
            "Lead_Status",
            "Lead_Source",
            "Created_Time",
            "Modified_Time",
            "Zylker_Course_Code",
            "Zylker_Course_Enrolment_Reference_Code",
        ];
        for a in names {
            for b in names {
                assert_eq!(same_name(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
            }
            // One byte changed anywhere.
            for at in 0..a.len() {
                let mut changed = a.as_bytes().to_vec();
                changed[at] ^= 1;
                assert!(!same_name(a.as_bytes(), &changed), "{a} at {at}");
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
        let html = rows_of(
            r#"[{"Phone":"+91 1","Email":"a@b.example","id":"3"}]"#,
            &columns,
            "Contacts",
        );
        assert!(html.contains(
            r#"<td data-label="Contact"><a href="/crm/Contacts/3">a@b.example +91 1</a></td>"#
        ));
        assert!(html.contains(r#"<td data-label="Email">a@b.example</td>"#));
    }
}
