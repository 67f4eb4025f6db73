//! Editing a lead: its status, phone, email and source (`GET` and `POST /crm/Leads/{id}/edit`), written to Zoho
//! CRM only if nobody changed the lead since the form was opened (`docs/zoho-protocol.md#updating-a-record`).

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use askama::Template;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::super::session::{self, CsrfForm, FlashKind, SignedIn};
use super::super::{AppError, Layout, render};
use super::lead_form::{FormErrors, check_email, check_phone, zoho_refusal};
use super::{display_value, fields_of, record_heading};
use crate::state::NavModule;
use crate::tokens::TokenError;
use crate::zoho::CrmError;
use crate::zoho::crm::{CrmField, PickListValue, Record, UpdateResult, is_record_id};

/// The module this form edits.
const LEADS: &str = "Leads";

/// The fields the form edits, by CRM API name, with their labels on the page.
const EDITED: [(&str, &str); 4] = [
    ("Lead_Status", "Status"),
    ("Phone", "Phone"),
    ("Email", "Email"),
    ("Lead_Source", "Source"),
];

/// Whether the user's profile may edit leads, as Zoho's module list said (`editable`, kept with the navigation).
pub(super) fn may_edit_leads(navigation: &[NavModule]) -> bool {
    navigation
        .iter()
        .any(|module| module.api_name == LEADS && module.editable)
}

/// The edit form as typed (or as loaded): the edited fields, what they held when the form was opened (so that
/// only changes are sent), and the lead's `Modified_Time` then.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct LeadEditForm {
    #[serde(rename = "Lead_Status", default)]
    pub lead_status: String,
    #[serde(rename = "Phone", default)]
    pub phone: String,
    #[serde(rename = "Email", default)]
    pub email: String,
    #[serde(rename = "Lead_Source", default)]
    pub lead_source: String,
    #[serde(rename = "loaded_Lead_Status", default)]
    pub loaded_lead_status: String,
    #[serde(rename = "loaded_Phone", default)]
    pub loaded_phone: String,
    #[serde(rename = "loaded_Email", default)]
    pub loaded_email: String,
    #[serde(rename = "loaded_Lead_Source", default)]
    pub loaded_lead_source: String,
    /// The lead's `Modified_Time` when the form was opened, exactly as Zoho wrote it: the update's
    /// `If-Unmodified-Since`.
    #[serde(rename = "Modified_Time", default)]
    pub modified_time: String,
    /// The lead's name, for the page's heading only.
    #[serde(default)]
    pub heading: String,
}

impl LeadEditForm {
    /// The edited fields by API name: `(name, as typed, as loaded)`, in [`EDITED`]'s order.
    fn fields_mut(&mut self) -> [(&'static str, &mut String, &mut String); 4] {
        [
            (
                "Lead_Status",
                &mut self.lead_status,
                &mut self.loaded_lead_status,
            ),
            ("Phone", &mut self.phone, &mut self.loaded_phone),
            ("Email", &mut self.email, &mut self.loaded_email),
            (
                "Lead_Source",
                &mut self.lead_source,
                &mut self.loaded_lead_source,
            ),
        ]
    }

    /// The form for `record` as Zoho holds it now.
    fn from_record(record: &Record, heading: String) -> LeadEditForm {
        let mut form = LeadEditForm {
            modified_time: text_of(record, "Modified_Time"),
            heading,
            ..LeadEditForm::default()
        };
        for (name, value, loaded) in form.fields_mut() {
            *value = text_of(record, name);
            loaded.clone_from(value);
        }
        form
    }

    fn trimmed(mut self) -> LeadEditForm {
        for (_, value, _) in self.fields_mut() {
            *value = value.trim().to_owned();
        }
        self
    }

    /// The new-lead form's checks for email and phone; a picklist value must be one of the field's, or the one
    /// the lead already had (a value Zoho since retired stays possible to keep).
    fn validate(&self, choices: &Choices) -> FormErrors {
        let mut errors = FormErrors::default();
        check_email(&mut errors, &self.email);
        check_phone(&mut errors, &self.phone);
        for (field, value, loaded, options) in [
            (
                "Lead_Status",
                &self.lead_status,
                &self.loaded_lead_status,
                &choices.statuses,
            ),
            (
                "Lead_Source",
                &self.lead_source,
                &self.loaded_lead_source,
                &choices.sources,
            ),
        ] {
            let known = value.is_empty()
                || value == loaded
                || options.iter().any(|choice| choice.actual_value == *value);
            if !known {
                errors.add(field, "Choose one of the listed values.");
            }
        }
        errors
    }

    /// What changed since the form was opened, as Zoho takes it: a field emptied is `null` (cleared).
    fn changes(&self) -> Record {
        let mut record = Record::new();
        for (name, value, loaded) in self.clone().fields_mut() {
            if value != loaded {
                if value.is_empty() {
                    record.insert(name, sonic_rs::Value::new());
                } else {
                    record.insert(name, value.as_str());
                }
            }
        }
        record
    }

    /// `field`'s value (an API name of [`EDITED`]) as typed, and as the form was opened with.
    fn value_of(&self, field: &str) -> (String, String) {
        self.clone()
            .fields_mut()
            .into_iter()
            .find(|(name, _, _)| *name == field)
            .map(|(_, value, loaded)| (value.clone(), loaded.clone()))
            .unwrap_or_default()
    }

    /// The fields that differ between what the person sent (`self`) and the lead as Zoho holds it now (`now`,
    /// a form freshly opened on it): each with what was typed, if the person changed it.
    fn conflicts_with(&self, now: &LeadEditForm) -> Vec<ConflictRow> {
        EDITED
            .iter()
            .filter_map(|(name, label)| {
                let (typed, loaded) = self.value_of(name);
                let (current, _) = now.value_of(name);
                let yours = (typed != loaded).then_some(typed);
                (yours.is_some() || current != loaded).then_some(ConflictRow {
                    label,
                    yours,
                    now: current,
                })
            })
            .collect()
    }
}

/// A field's value as the form holds it: text, or empty.
fn text_of(record: &Record, field: &str) -> String {
    record
        .get(&field)
        .and_then(|value| sonic_rs::JsonValueTrait::as_str(value))
        .unwrap_or_default()
        .to_owned()
}

/// The picklists' choices, from the fields metadata.
struct Choices {
    statuses: Vec<PickListValue>,
    sources: Vec<PickListValue>,
}

impl Choices {
    fn of(fields: &[CrmField]) -> Choices {
        let values = |name: &str| {
            fields
                .iter()
                .find(|field| field.api_name == name)
                .map(|field| field.pick_list_values.clone())
                .unwrap_or_default()
        };
        Choices {
            statuses: values("Lead_Status"),
            sources: values("Lead_Source"),
        }
    }
}

/// One option of a select.
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// A select's options: the picklist's, and the current value first when the picklist no longer has it.
fn options(values: &[PickListValue], current: &str) -> Vec<Choice> {
    let mut options = Vec::with_capacity(values.len() + 1);
    if !current.is_empty() && !values.iter().any(|value| value.actual_value == current) {
        options.push(Choice {
            value: current.to_owned(),
            label: current.to_owned(),
        });
    }
    options.extend(values.iter().map(|value| Choice {
        value: value.actual_value.clone(),
        label: value.display_value.clone(),
    }));
    options
}

/// Someone changed the lead after the form was opened: who and when, and what was typed beside what Zoho holds.
pub struct Conflict {
    pub modified_by: Option<String>,
    pub modified_at: Option<String>,
    pub rows: Vec<ConflictRow>,
}

/// One field the person changed or Zoho's copy did: what the person typed (`None`: left as it was), and what
/// Zoho holds now.
pub struct ConflictRow {
    pub label: &'static str,
    pub yours: Option<String>,
    pub now: String,
}

/// The edit form of a lead.
#[derive(Template)]
#[template(path = "edit_lead.html")]
pub struct EditLeadPage {
    pub layout: Layout,
    pub id: String,
    pub form: LeadEditForm,
    pub statuses: Vec<Choice>,
    pub sources: Vec<Choice>,
    pub errors: FormErrors,
    pub conflict: Option<Conflict>,
}

impl EditLeadPage {
    async fn render(
        signed_in: &SignedIn,
        id: String,
        form: LeadEditForm,
        choices: &Choices,
        errors: FormErrors,
        conflict: Option<Conflict>,
    ) -> Result<HttpResponse, AppError> {
        let page = EditLeadPage {
            layout: signed_in
                .layout(format!("Edit {}", form.heading.as_str()))
                .await,
            statuses: options(&choices.statuses, &form.lead_status),
            sources: options(&choices.sources, &form.lead_source),
            id,
            form,
            errors,
            conflict,
        };
        render(&page)
    }
}

/// The lead's id from the path, if it can be one.
fn lead_id(path: web::Path<String>) -> Result<String, AppError> {
    let id = path.into_inner();
    if is_record_id(&id) {
        Ok(id)
    } else {
        Err(AppError::NotFound)
    }
}

/// Refuses, with the 403 page, a user whose profile may not edit leads.
async fn require_edit(signed_in: &SignedIn) -> Result<(), AppError> {
    let navigation =
        super::super::landing::navigation_or_error(&signed_in.state, signed_in.crm()).await?;
    if may_edit_leads(&navigation) {
        Ok(())
    } else {
        Err(AppError::CannotEdit("leads".to_owned()))
    }
}

/// `GET /crm/Leads/{id}/edit`: the form, filled with the lead as Zoho holds it now.
pub async fn edit_lead(
    signed_in: SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = lead_id(path)?;
    require_edit(&signed_in).await?;
    let crm = signed_in.crm();
    let record = crm.record(LEADS, &id).await?.ok_or(AppError::NotFound)?;
    let choices = Choices::of(&fields_of(&signed_in, crm, LEADS).await?);
    let heading = record_heading(&record).unwrap_or_else(|| format!("Record {id}"));
    let form = LeadEditForm::from_record(&record, heading);
    EditLeadPage::render(&signed_in, id, form, &choices, FormErrors::default(), None).await
}

/// `POST /crm/Leads/{id}/edit`: checks the form as the new-lead form is checked, then writes what changed with
/// `If-Unmodified-Since` set to the `Modified_Time` the form was opened on. A lead changed at Zoho since then
/// is not written: the page says so and shows the lead as it is now, beside what was typed.
pub async fn update_lead(
    signed_in: SignedIn,
    path: web::Path<String>,
    form: CsrfForm<LeadEditForm>,
) -> Result<HttpResponse, AppError> {
    let id = lead_id(path)?;
    require_edit(&signed_in).await?;
    let form = form.0.trimmed();
    if OffsetDateTime::parse(&form.modified_time, &Rfc3339).is_err() {
        return Err(AppError::BadRequest(
            "The form does not say which version of the enquiry it was opened on, so nothing was saved. Please open the edit page again."
                .to_owned(),
        ));
    }
    let crm = signed_in.crm();
    let choices = Choices::of(&fields_of(&signed_in, crm, LEADS).await?);
    let errors = form.validate(&choices);
    if !errors.is_empty() {
        return unprocessable(
            EditLeadPage::render(&signed_in, id, form, &choices, errors, None).await,
        );
    }
    let changes = form.changes();
    if changes.is_empty() {
        session::flash(
            &signed_in.session,
            FlashKind::Info,
            "Nothing was changed, so nothing was sent to Zoho CRM.",
        );
        return Ok(back_to_record(&id));
    }
    let answer = crm
        .update(LEADS, &id, &changes, Some(&form.modified_time))
        .await;
    match answer {
        Ok(UpdateResult::Updated { .. }) => {
            tracing::info!(record_id = %id, fields = changes.len(), "lead updated");
            // The heading came back with the form: it is not put into the cookie (the flash travels there).
            session::flash(
                &signed_in.session,
                FlashKind::Success,
                "Your changes to this enquiry are saved in Zoho CRM.",
            );
            Ok(back_to_record(&id))
        }
        Ok(UpdateResult::AlreadyModified {
            modified_time,
            modified_by,
        }) => {
            tracing::info!(record_id = %id, "lead changed at Zoho since its form was opened; not written");
            let current = crm.record(LEADS, &id).await?.ok_or(AppError::NotFound)?;
            let heading = record_heading(&current).unwrap_or_else(|| form.heading.clone());
            let fresh = LeadEditForm::from_record(&current, heading);
            let conflict = Conflict {
                modified_by,
                modified_at: modified_time
                    .or_else(|| Some(fresh.modified_time.clone()))
                    .filter(|at| !at.is_empty())
                    .map(|at| display_value(&sonic_rs::Value::from(at.as_str()))),
                rows: form.conflicts_with(&fresh),
            };
            let page = EditLeadPage::render(
                &signed_in,
                id,
                fresh,
                &choices,
                FormErrors::default(),
                Some(conflict),
            )
            .await;
            with_status(page, StatusCode::CONFLICT)
        }
        Ok(UpdateResult::Failed {
            code,
            message,
            field,
        }) => {
            tracing::info!(record_id = %id, %code, ?field, "Zoho refused the lead's changes");
            let errors = zoho_refusal(
                &EDITED.map(|(name, _)| name),
                field.as_deref(),
                &message,
                |message| format!("Zoho CRM did not save your changes: {message}"),
            );
            unprocessable(EditLeadPage::render(&signed_in, id, form, &choices, errors, None).await)
        }
        Err(failure) if matches!(failure.source, TokenError::Crm(CrmError::NoPermission)) => {
            // The kept navigation said the profile may edit; Zoho says no now. The next page lists it afresh.
            signed_in.state.navigation.remove(&signed_in.owner);
            Err(AppError::CannotEdit("leads".to_owned())
                .caused_by(super::super::error::error_chain(&failure)))
        }
        Err(failure) => Err(failure.into()),
    }
}

/// `303 See Other` to the lead's record page.
fn back_to_record(id: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("/crm/Leads/{id}")))
        .finish()
}

fn with_status(
    page: Result<HttpResponse, AppError>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let mut page = page?;
    *page.status_mut() = status;
    Ok(page)
}

/// The form again, with what is wrong with it.
fn unprocessable(page: Result<HttpResponse, AppError>) -> Result<HttpResponse, AppError> {
    with_status(page, StatusCode::UNPROCESSABLE_ENTITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choices() -> Choices {
        let values = |names: &[&str]| {
            names
                .iter()
                .map(|name| PickListValue {
                    display_value: name.to_string(),
                    actual_value: name.to_string(),
                })
                .collect()
        };
        Choices {
            statuses: values(&["Not Contacted", "Contacted"]),
            sources: values(&["Website", "Chat"]),
        }
    }

    fn loaded() -> LeadEditForm {
        let record: Record = sonic_rs::from_str(
            r#"{"id":"1","Lead_Status":"Not Contacted","Phone":"+91 98400 12345","Email":"kavya@example.com","Lead_Source":"Old Fair","Modified_Time":"2026-01-05T10:00:00+05:30"}"#,
        )
        .unwrap();
        LeadEditForm::from_record(&record, "Kavya".into())
    }

    #[test]
    fn only_changed_fields_are_sent_and_an_emptied_one_is_cleared() {
        let mut form = loaded();
        assert!(form.changes().is_empty(), "nothing typed, nothing sent");
        form.lead_status = "Contacted".into();
        form.phone = String::new();

        let changes = form.changes();

        assert_eq!(changes.len(), 2);
        // The object's entries in any order: Zoho reads them by name.
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&sonic_rs::to_string(&changes).unwrap())
                .unwrap(),
            serde_json::json!({"Lead_Status": "Contacted", "Phone": null})
        );
        assert_eq!(form.modified_time, "2026-01-05T10:00:00+05:30");
    }

    #[test]
    fn picklist_values_must_be_listed_unless_kept() {
        let mut form = loaded();
        assert!(
            form.validate(&choices()).is_empty(),
            "a retired source may stay"
        );
        form.lead_source = "Made Up".into();
        form.lead_status = "Contacted".into();
        form.email = "not-an-email".into();

        let errors = form.validate(&choices());

        assert!(errors.for_field("Lead_Source").is_some());
        assert!(errors.for_field("Lead_Status").is_none());
        assert!(errors.for_field("Email").is_some(), "the new-lead check");
    }

    #[test]
    fn a_conflict_lists_the_fields_either_side_changed() {
        let mut sent = loaded();
        sent.lead_status = "Contacted".into();
        let mut now = loaded();
        now.phone = "+91 90000 44444".into();
        now.lead_status = "Junk Lead".into();

        let rows = sent.conflicts_with(&now);

        let shown: Vec<(&str, Option<&str>, &str)> = rows
            .iter()
            .map(|row| (row.label, row.yours.as_deref(), row.now.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("Status", Some("Contacted"), "Junk Lead"),
                ("Phone", None, "+91 90000 44444"),
            ]
        );
    }

    #[test]
    fn a_retired_value_is_offered_first() {
        let values = choices().sources;
        let offered = options(&values, "Old Fair");
        assert_eq!(offered[0].value, "Old Fair");
        assert_eq!(offered.len(), 3);
        assert_eq!(options(&values, "Chat").len(), 2);
        assert_eq!(options(&values, "").len(), 2);
    }

    #[test]
    fn the_form_reads_the_names_it_writes() {
        let body = "Lead_Status=Contacted&Phone=1&Email=a%40b.co&Lead_Source=Chat&loaded_Lead_Status=x&loaded_Phone=y&loaded_Email=z&loaded_Lead_Source=w&Modified_Time=t&heading=h&csrf_token=c";
        let mut form: LeadEditForm = serde_urlencoded::from_str(body).unwrap();
        let read: Vec<(String, String, String)> = form
            .fields_mut()
            .into_iter()
            .map(|(name, value, loaded)| (name.to_owned(), value.clone(), loaded.clone()))
            .collect();
        assert_eq!(
            read[0],
            ("Lead_Status".into(), "Contacted".into(), "x".into())
        );
        assert_eq!(read[3], ("Lead_Source".into(), "Chat".into(), "w".into()));
        assert_eq!(
            EDITED.map(|(name, _)| name),
            form.fields_mut().map(|(name, _, _)| name)
        );
    }
}
