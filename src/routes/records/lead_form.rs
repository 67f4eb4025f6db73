//! A new student enquiry: the form, its checks, and the lead it creates in Zoho CRM (`/crm/Leads/new`,
//! `POST /crm/Leads`).

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use askama::Template;

use super::super::session::{self, CsrfForm, FlashKind, SignedIn};
use super::super::{AppError, Layout, render};
use crate::zoho::crm::{CreateResult, Record, is_record_id};

/// The new-lead form as typed, kept to show it again with its errors.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct LeadForm {
    #[serde(rename = "First_Name", default)]
    pub first_name: String,
    #[serde(rename = "Last_Name", default)]
    pub last_name: String,
    #[serde(rename = "Email", default)]
    pub email: String,
    #[serde(rename = "Phone", default)]
    pub phone: String,
    #[serde(rename = "Lead_Source", default)]
    pub lead_source: String,
    #[serde(rename = "Description", default)]
    pub description: String,
}

/// Per-field messages, by the field's API name, and one for the form as a whole.
#[derive(Debug, Default)]
pub struct FormErrors {
    pub fields: Vec<(String, String)>,
    pub general: Option<String>,
}

impl FormErrors {
    pub(super) fn add(&mut self, field: &str, message: impl Into<String>) {
        self.fields.push((field.to_owned(), message.into()));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_none()
    }

    /// The message for one field, for the template.
    pub fn for_field(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, message)| message.as_str())
    }
}

/// The lead forms' check of an email (new and edited leads): empty, or shaped like an address.
pub(super) fn check_email(errors: &mut FormErrors, email: &str) {
    if !email.is_empty() && !looks_like_email(email) {
        errors.add("Email", "This does not look like an email address.");
    }
}

/// The lead forms' check of a phone number: empty, or at most 30 of digits, spaces and `+ - ( ) .`.
pub(super) fn check_phone(errors: &mut FormErrors, phone: &str) {
    if !phone.is_empty()
        && (phone.chars().count() > 30
            || !phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c)))
    {
        errors.add(
            "Phone",
            "A phone number has digits, spaces and + - ( ) only.",
        );
    }
}

/// Zoho's refusal of a lead the form sent, as the form shows it: next to the field Zoho names when the form has
/// that field (`fields`), else for the form as a whole, as `general` words it.
pub(super) fn zoho_refusal(
    fields: &[&str],
    field: Option<&str>,
    message: &str,
    general: impl FnOnce(&str) -> String,
) -> FormErrors {
    let mut errors = FormErrors::default();
    match field.filter(|field| fields.contains(field)) {
        Some(field) => errors.add(field, format!("Zoho CRM says: {message}")),
        None => errors.general = Some(general(message)),
    }
    errors
}

/// Roughly an email address: something, one `@`, a domain with a dot, no spaces.
fn looks_like_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(char::is_whitespace)
}

impl LeadForm {
    /// The form's fields by their CRM API name: the one table that trimming, the record sent to Zoho and the
    /// placing of Zoho's per-field errors go by (the serde names above are checked against it by a test).
    fn fields_mut(&mut self) -> [(&'static str, &mut String); 6] {
        [
            ("First_Name", &mut self.first_name),
            ("Last_Name", &mut self.last_name),
            ("Email", &mut self.email),
            ("Phone", &mut self.phone),
            ("Lead_Source", &mut self.lead_source),
            ("Description", &mut self.description),
        ]
    }

    /// The API names of the form's fields.
    fn api_names() -> [&'static str; 6] {
        LeadForm::default().fields_mut().map(|(name, _)| name)
    }

    fn trimmed(&self) -> LeadForm {
        let mut form = self.clone();
        for (_, value) in form.fields_mut() {
            *value = value.trim().to_owned();
        }
        form
    }

    fn validate(&self) -> FormErrors {
        let mut errors = FormErrors::default();
        if self.last_name.is_empty() {
            errors.add("Last_Name", "Last name is required.");
        } else if self.last_name.chars().count() > 80 {
            errors.add("Last_Name", "Last name can be at most 80 characters.");
        }
        if self.first_name.chars().count() > 40 {
            errors.add("First_Name", "First name can be at most 40 characters.");
        }
        check_email(&mut errors, &self.email);
        check_phone(&mut errors, &self.phone);
        if self.description.chars().count() > 2000 {
            errors.add("Description", "Notes can be at most 2,000 characters.");
        }
        errors
    }

    /// The record sent to Zoho: only the fields that were filled in.
    fn to_record(&self) -> Record {
        let mut record = Record::new();
        for (name, value) in self.clone().fields_mut() {
            if !value.is_empty() {
                record.insert(name, value.as_str());
            }
        }
        record
    }
}

/// The new-lead form.
#[derive(Template)]
#[template(path = "new_lead.html")]
pub struct NewLeadPage {
    pub layout: Layout,
    pub form: LeadForm,
    pub errors: FormErrors,
}

/// `GET /crm/Leads/new`.
pub async fn new_lead(signed_in: SignedIn) -> Result<HttpResponse, AppError> {
    render(&NewLeadPage {
        layout: signed_in.layout("New enquiry").await,
        form: LeadForm::default(),
        errors: FormErrors::default(),
    })
}

/// The form again, with what was typed and what is wrong with it.
async fn form_again(
    signed_in: &SignedIn,
    form: LeadForm,
    errors: FormErrors,
) -> Result<HttpResponse, AppError> {
    let mut response = render(&NewLeadPage {
        layout: signed_in.layout("New enquiry").await,
        form,
        errors,
    })?;
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(response)
}

/// `POST /crm/Leads`: validates, creates the lead in Zoho CRM, and shows it; Zoho's per-field errors go back
/// onto the form.
pub async fn create_lead(
    signed_in: SignedIn,
    form: CsrfForm<LeadForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.0.trimmed();
    let errors = form.validate();
    if !errors.is_empty() {
        return form_again(&signed_in, form, errors).await;
    }
    let records: [Record; 1] = [form.to_record()];
    let results = signed_in.crm().create("Leads", &records).await?;
    match results.into_iter().next() {
        Some(CreateResult::Created { id }) if is_record_id(&id) => {
            let name = [form.first_name.as_str(), form.last_name.as_str()]
                .iter()
                .filter(|part| !part.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            session::flash(
                &signed_in.session,
                FlashKind::Success,
                format!("The enquiry from {name} is saved in Zoho CRM."),
            );
            tracing::info!(record_id = %id, "lead created");
            Ok(HttpResponse::SeeOther()
                .insert_header((LOCATION, format!("/crm/Leads/{id}")))
                .finish())
        }
        Some(CreateResult::Failed {
            code,
            message,
            field,
        }) => {
            tracing::info!(%code, ?field, "Zoho refused the new lead");
            let errors = zoho_refusal(
                &LeadForm::api_names(),
                field.as_deref(),
                &message,
                |message| format!("Zoho CRM did not save the enquiry: {message}"),
            );
            form_again(&signed_in, form, errors).await
        }
        _ => Err(AppError::Upstream
            .caused_by("Zoho's answer to a new lead carried no usable result".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_rs::JsonValueTrait;

    #[test]
    fn the_lead_table_names_the_fields_the_form_reads() {
        let body: Vec<(String, String)> = LeadForm::api_names()
            .iter()
            .map(|name| (name.to_string(), format!("value of {name}")))
            .collect();
        let form: LeadForm =
            serde_urlencoded::from_str(&serde_urlencoded::to_string(&body).unwrap()).unwrap();
        let record = form.to_record();
        for name in LeadForm::api_names() {
            assert_eq!(
                record[name].as_str(),
                Some(format!("value of {name}").as_str())
            );
        }
        assert_eq!(record.len(), 6);
    }

    #[test]
    fn email_shape() {
        assert!(looks_like_email("meera.iyer@example.com"));
        assert!(looks_like_email("liam.o'brien@zylker.com"));
        for bad in [
            "",
            "meera",
            "@example.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
            "a@b.",
        ] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }
}
