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

/// Text already escaped for HTML: the template writes it as it is. Made only by [`EscapedHtml::of`], so it
/// cannot hold anything unescaped.
#[derive(Debug, Clone)]
pub struct EscapedHtml(String);

impl EscapedHtml {
    /// `text` escaped as the templates escape every other text.
    pub fn of(text: &str) -> EscapedHtml {
        let escaped = askama::filters::escape(text, askama::filters::Html).map(|e| e.to_string());
        EscapedHtml(escaped.unwrap_or_else(|never| match never {}))
    }
}

impl fmt::Display for EscapedHtml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl askama::filters::HtmlSafe for EscapedHtml {}

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
    pub id: Cow<'a, str>,
    pub cells: SmallVec<[Cow<'a, str>; INLINE_CELLS]>,
}

pub(super) fn row<'a>(record: &'a Record, columns: &[Column], wanted: &[&str]) -> Row<'a> {
    // `wanted` is `id`, then each column's fields in order. One walk over the record's entries finds them all
    // (a lookup per field would walk the entries once per field).
    let mut values: SmallVec<[Option<&Value>; INLINE_CELLS + 2]> =
        smallvec::smallvec![None; wanted.len()];
    for (name, value) in record.iter() {
        for (slot, field) in values.iter_mut().zip(wanted) {
            if *field == name {
                *slot = Some(value);
            }
        }
    }
    let display = |value: &'a Value| display_value_with(value, TimeDetail::Day);
    let mut values = values.into_iter();
    let id = values.next().flatten().map(display).unwrap_or_default();
    let cells = columns
        .iter()
        .map(|column| {
            // A column joins its fields' texts with spaces (a lead's name is first and last name).
            let texts = values.by_ref().take(column.fields.len()).flatten();
            join_texts(texts.map(display), " ")
        })
        .collect();
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
            matches!(only_last.cells[0], Cow::Borrowed(_)),
            "a single text is the record's own, not a copy"
        );
        // The column's order wins over the record's.
        let record: Record =
            sonic_rs::from_str(r#"{"Last_Name":"O'Brien","First_Name":"Søren"}"#).unwrap();
        assert_eq!(row(&record, columns, &wanted).cells[0], "Søren O'Brien");
        assert_eq!(row(&record, columns, &wanted).id, "");
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
