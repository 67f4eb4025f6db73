//! Zylker Academy's CRM: the personas, the org, the module and field metadata, and the seeded records.
//!
//! The records are generated from fixed lists with a fixed seed, so every sandbox start holds the same data
//! (tests and screenshots can rely on it), and records created through the API are appended to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};

/// The org every persona belongs to.
pub const ORG_ID: &str = "60032191920";
/// The org's company name.
pub const COMPANY_NAME: &str = "Zylker Academy";
/// India Standard Time, the org's time zone: Zoho writes datetimes in it (`+05:30`).
pub const ORG_OFFSET: UtcOffset = match UtcOffset::from_hms(5, 30, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// A CRM profile: which modules its users may open, and in which of them they may edit records.
#[derive(Debug)]
pub struct Profile {
    pub name: &'static str,
    pub id: &'static str,
    /// Module API names this profile may read and create in; `None`: every module.
    pub modules: Option<&'static [&'static str]>,
    /// Of those, the modules whose records this profile may edit; `None`: all of them.
    pub edits: Option<&'static [&'static str]>,
}

impl Profile {
    /// Whether users with this profile may work with `module` (a canonical API name).
    pub fn allows(&self, module: &str) -> bool {
        self.modules.is_none_or(|modules| modules.contains(&module))
    }

    /// Whether users with this profile may edit records of `module` (a canonical API name).
    pub fn may_edit(&self, module: &str) -> bool {
        self.allows(module) && self.edits.is_none_or(|modules| modules.contains(&module))
    }
}

/// A Zylker Academy CRM user who can log in on the consent page.
#[derive(Debug)]
pub struct Persona {
    pub email: &'static str,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub full_name: &'static str,
    pub role: &'static str,
    pub role_id: &'static str,
    pub profile: &'static Profile,
    /// CRM user id.
    pub id: &'static str,
    /// Zoho Accounts user id.
    pub zuid: &'static str,
}

/// Every module (Priya Raman).
pub static ADMINISTRATOR: Profile = Profile {
    name: "Administrator",
    id: "6003219192000000026011",
    modules: None,
    edits: None,
};
/// Leads, Contacts and Courses (Arjun Mehta).
pub static ACADEMIC_ADVISOR: Profile = Profile {
    name: "Academic Advisor",
    id: "6003219192000000026014",
    modules: Some(&["Leads", "Contacts", "Courses"]),
    edits: None,
};
/// Leads only, to read and take new enquiries: no editing (Sofia Khan).
pub static SUPPORT: Profile = Profile {
    name: "Support",
    id: "6003219192000000026017",
    modules: Some(&["Leads"]),
    edits: Some(&[]),
};
/// Courses only (Liam O'Brien).
pub static STUDENT: Profile = Profile {
    name: "Student",
    id: "6003219192000000026020",
    modules: Some(&["Courses"]),
    edits: None,
};

/// The four personas, in the order the consent page lists them. The generated records are stamped by position
/// (the first is the administrator, the first three are staff), so the order is fixed.
pub static PERSONAS: [Persona; 4] = [
    Persona {
        email: "priya.raman@zylker.com",
        first_name: "Priya",
        last_name: "Raman",
        full_name: "Priya Raman",
        role: "Course Coordinator",
        role_id: "6003219192000000026005",
        profile: &ADMINISTRATOR,
        id: "6003219192000000032001",
        zuid: "60032191931",
    },
    Persona {
        email: "arjun.mehta@zylker.com",
        first_name: "Arjun",
        last_name: "Mehta",
        full_name: "Arjun Mehta",
        role: "Academic Advisor",
        role_id: "6003219192000000026007",
        profile: &ACADEMIC_ADVISOR,
        id: "6003219192000000032003",
        zuid: "60032191933",
    },
    Persona {
        email: "sofia.khan@zylker.com",
        first_name: "Sofia",
        last_name: "Khan",
        full_name: "Sofia Khan",
        role: "Support Agent",
        role_id: "6003219192000000026009",
        profile: &SUPPORT,
        id: "6003219192000000032005",
        zuid: "60032191935",
    },
    Persona {
        email: "liam.o'brien@zylker.com",
        first_name: "Liam",
        last_name: "O'Brien",
        full_name: "Liam O'Brien",
        role: "Student",
        role_id: "6003219192000000026013",
        profile: &STUDENT,
        id: "6003219192000000032007",
        zuid: "60032191937",
    },
];

/// The persona whose `email` this is (exact match: the consent form sends the value it was given).
pub fn persona_by_email(email: &str) -> Option<usize> {
    PERSONAS.iter().position(|persona| persona.email == email)
}

/// `{name, id}` as Zoho writes owners and record authors.
pub fn user_ref(persona: &Persona) -> Value {
    json!({"name": persona.full_name, "id": persona.id, "email": persona.email})
}

/// A field of a module, as `settings/fields` describes it.
#[derive(Debug)]
pub struct FieldDef {
    pub api_name: &'static str,
    pub label: &'static str,
    /// Zoho's `data_type`: text, email, phone, picklist, datetime, date, integer, currency, lookup, ownerlookup,
    /// textarea, website, boolean.
    pub data_type: &'static str,
    pub custom: bool,
    pub mandatory: bool,
    pub read_only: bool,
    pub picklist: &'static [&'static str],
}

impl FieldDef {
    /// Zoho's `json_type` for this data type.
    pub fn json_type(&self) -> &'static str {
        match self.data_type {
            "integer" => "integer",
            "currency" | "double" => "double",
            "boolean" => "boolean",
            "lookup" | "ownerlookup" => "jsonobject",
            _ => "string",
        }
    }

    /// Whether values of this field are plain strings (what the create endpoint checks).
    pub fn is_textual(&self) -> bool {
        self.json_type() == "string"
    }
}

const fn field(api_name: &'static str, label: &'static str, data_type: &'static str) -> FieldDef {
    FieldDef {
        api_name,
        label,
        data_type,
        custom: false,
        mandatory: false,
        read_only: false,
        picklist: &[],
    }
}

const fn custom(api_name: &'static str, label: &'static str, data_type: &'static str) -> FieldDef {
    FieldDef {
        custom: true,
        ..field(api_name, label, data_type)
    }
}

const fn mandatory(def: FieldDef) -> FieldDef {
    FieldDef {
        mandatory: true,
        ..def
    }
}

const fn read_only(def: FieldDef) -> FieldDef {
    FieldDef {
        read_only: true,
        ..def
    }
}

const fn picklist(def: FieldDef, values: &'static [&'static str]) -> FieldDef {
    FieldDef {
        picklist: values,
        ..def
    }
}

/// A CRM module, as `settings/modules` describes it.
#[derive(Debug)]
pub struct ModuleDef {
    pub api_name: &'static str,
    pub module_name: &'static str,
    pub singular_label: &'static str,
    pub plural_label: &'static str,
    pub id: &'static str,
    /// `false` for modules the REST API does not serve (Home, Reports): listed, never opened.
    pub api_supported: bool,
    /// `default` for Zoho's own modules, `custom` for the org's.
    pub generated_type: &'static str,
    pub fields: &'static [FieldDef],
}

impl ModuleDef {
    /// The field named `api_name`, if this module has it.
    pub fn field(&self, api_name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|field| field.api_name == api_name)
    }
}

/// Zylker Academy's courses: the Courses module and the Leads' `Course_Interest` picklist.
pub const COURSE_NAMES: [&str; 10] = [
    "Web Design Fundamentals",
    "Full-Stack JavaScript",
    "UI/UX Design",
    "Python for Web",
    "DevOps Essentials",
    "React & TypeScript",
    "Responsive CSS Mastery",
    "Node.js APIs",
    "Data Visualisation for the Web",
    "Mobile-First Design",
];

const LEAD_STATUSES: &[&str] = &[
    "Not Contacted",
    "Attempted to Contact",
    "Contact in Future",
    "Contacted",
    "Pre-Qualified",
    "Not Qualified",
    "Lost Lead",
    "Junk Lead",
];
const LEAD_SOURCES: &[&str] = &[
    "Website",
    "Chat",
    "Facebook",
    "Advertisement",
    "Employee Referral",
    "External Referral",
    "Seminar Partner",
    "Trade Show",
    "Web Download",
    "Cold Call",
];
const STUDENT_STATUSES: &[&str] = &["Enrolled", "Completed", "On Hold"];
const COURSE_MODES: &[&str] = &["Online", "Classroom", "Hybrid"];
const COURSE_LEVELS: &[&str] = &["Beginner", "Intermediate", "Advanced"];
const DEAL_STAGES: &[&str] = &[
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];
const INDUSTRIES: &[&str] = &[
    "Financial Services",
    "Retail",
    "Analytics",
    "Cloud Services",
    "Healthcare",
    "Automotive",
    "Media",
    "Travel",
];

static LEAD_FIELDS: [FieldDef; 17] = [
    field("Owner", "Lead Owner", "ownerlookup"),
    field("First_Name", "First Name", "text"),
    mandatory(field("Last_Name", "Last Name", "text")),
    read_only(field("Full_Name", "Lead Name", "text")),
    field("Email", "Email", "email"),
    field("Phone", "Phone", "phone"),
    field("City", "City", "text"),
    picklist(
        field("Lead_Status", "Lead Status", "picklist"),
        LEAD_STATUSES,
    ),
    picklist(
        field("Lead_Source", "Lead Source", "picklist"),
        LEAD_SOURCES,
    ),
    picklist(
        custom("Course_Interest", "Course Interest", "picklist"),
        &COURSE_NAMES,
    ),
    field("Company", "Company", "text"),
    field("Description", "Description", "textarea"),
    read_only(field("Created_Time", "Created Time", "datetime")),
    read_only(field("Modified_Time", "Modified Time", "datetime")),
    read_only(field("Created_By", "Created By", "ownerlookup")),
    read_only(field("Modified_By", "Modified By", "ownerlookup")),
    read_only(field("id", "Record Id", "bigint")),
];

static CONTACT_FIELDS: [FieldDef; 16] = [
    field("Owner", "Contact Owner", "ownerlookup"),
    field("First_Name", "First Name", "text"),
    mandatory(field("Last_Name", "Last Name", "text")),
    read_only(field("Full_Name", "Contact Name", "text")),
    field("Email", "Email", "email"),
    field("Phone", "Phone", "phone"),
    field("Mailing_City", "Mailing City", "text"),
    custom("Course", "Course", "lookup"),
    custom("Batch", "Batch", "text"),
    custom("Enrollment_Date", "Enrollment Date", "date"),
    picklist(
        custom("Student_Status", "Student Status", "picklist"),
        STUDENT_STATUSES,
    ),
    read_only(field("Created_Time", "Created Time", "datetime")),
    read_only(field("Modified_Time", "Modified Time", "datetime")),
    read_only(field("Created_By", "Created By", "ownerlookup")),
    read_only(field("Modified_By", "Modified By", "ownerlookup")),
    read_only(field("id", "Record Id", "bigint")),
];

static ACCOUNT_FIELDS: [FieldDef; 11] = [
    field("Owner", "Account Owner", "ownerlookup"),
    mandatory(field("Account_Name", "Account Name", "text")),
    picklist(field("Industry", "Industry", "picklist"), INDUSTRIES),
    field("Website", "Website", "website"),
    field("Phone", "Phone", "phone"),
    field("Billing_City", "Billing City", "text"),
    read_only(field("Created_Time", "Created Time", "datetime")),
    read_only(field("Modified_Time", "Modified Time", "datetime")),
    read_only(field("Created_By", "Created By", "ownerlookup")),
    read_only(field("Modified_By", "Modified By", "ownerlookup")),
    read_only(field("id", "Record Id", "bigint")),
];

static DEAL_FIELDS: [FieldDef; 14] = [
    field("Owner", "Deal Owner", "ownerlookup"),
    mandatory(field("Deal_Name", "Deal Name", "text")),
    field("Account_Name", "Account Name", "lookup"),
    mandatory(picklist(field("Stage", "Stage", "picklist"), DEAL_STAGES)),
    field("Amount", "Amount", "currency"),
    field("Closing_Date", "Closing Date", "date"),
    custom("Course", "Course", "lookup"),
    custom("Seats", "Seats", "integer"),
    field("Description", "Description", "textarea"),
    read_only(field("Created_Time", "Created Time", "datetime")),
    read_only(field("Modified_Time", "Modified Time", "datetime")),
    read_only(field("Created_By", "Created By", "ownerlookup")),
    read_only(field("Modified_By", "Modified By", "ownerlookup")),
    read_only(field("id", "Record Id", "bigint")),
];

static COURSE_FIELDS: [FieldDef; 14] = [
    field("Owner", "Course Owner", "ownerlookup"),
    mandatory(field("Name", "Course Name", "text")),
    custom("Course_Code", "Course Code", "text"),
    custom("Duration_Weeks", "Duration (weeks)", "integer"),
    custom("Fee", "Fee", "currency"),
    picklist(custom("Mode", "Mode", "picklist"), COURSE_MODES),
    picklist(custom("Level", "Level", "picklist"), COURSE_LEVELS),
    custom("Next_Batch_Start", "Next Batch Starts", "date"),
    custom("Seats_Available", "Seats Available", "integer"),
    read_only(field("Created_Time", "Created Time", "datetime")),
    read_only(field("Modified_Time", "Modified Time", "datetime")),
    read_only(field("Created_By", "Created By", "ownerlookup")),
    read_only(field("Modified_By", "Modified By", "ownerlookup")),
    read_only(field("id", "Record Id", "bigint")),
];

/// Every module, in the order `settings/modules` lists them.
pub static MODULES: [ModuleDef; 7] = [
    ModuleDef {
        api_name: "Home",
        module_name: "Home",
        singular_label: "Home",
        plural_label: "Home",
        id: "6003219192000000002091",
        api_supported: false,
        generated_type: "default",
        fields: &[],
    },
    ModuleDef {
        api_name: "Leads",
        module_name: "Leads",
        singular_label: "Lead",
        plural_label: "Leads",
        id: "6003219192000000002175",
        api_supported: true,
        generated_type: "default",
        fields: &LEAD_FIELDS,
    },
    ModuleDef {
        api_name: "Contacts",
        module_name: "Contacts",
        singular_label: "Contact",
        plural_label: "Contacts",
        id: "6003219192000000002179",
        api_supported: true,
        generated_type: "default",
        fields: &CONTACT_FIELDS,
    },
    ModuleDef {
        api_name: "Accounts",
        module_name: "Accounts",
        singular_label: "Account",
        plural_label: "Accounts",
        id: "6003219192000000002177",
        api_supported: true,
        generated_type: "default",
        fields: &ACCOUNT_FIELDS,
    },
    ModuleDef {
        api_name: "Deals",
        module_name: "Deals",
        singular_label: "Deal",
        plural_label: "Deals",
        id: "6003219192000000002181",
        api_supported: true,
        generated_type: "default",
        fields: &DEAL_FIELDS,
    },
    ModuleDef {
        api_name: "Courses",
        module_name: "CustomModule1",
        singular_label: "Course",
        plural_label: "Courses",
        id: "6003219192000000351003",
        api_supported: true,
        generated_type: "custom",
        fields: &COURSE_FIELDS,
    },
    ModuleDef {
        api_name: "Reports",
        module_name: "Reports",
        singular_label: "Report",
        plural_label: "Reports",
        id: "6003219192000000002083",
        api_supported: false,
        generated_type: "default",
        fields: &[],
    },
];

/// The module whose API name is `name`, compared case-insensitively as Zoho does in URLs.
pub fn module_by_name(name: &str) -> Option<&'static ModuleDef> {
    MODULES
        .iter()
        .find(|module| module.api_name.eq_ignore_ascii_case(name))
}

/// A CRM record: field API name to value, `id` included.
pub type Record = Map<String, Value>;

/// One module's records, keyed by numeric id; ids grow with creation time, so the map's order is creation order.
#[derive(Debug, Default)]
pub struct ModuleRecords {
    pub by_id: BTreeMap<u64, Arc<Record>>,
}

impl ModuleRecords {
    /// The id the next created record gets: above every existing one, so listings stay in creation order.
    pub fn next_id(&self, base: u64) -> u64 {
        self.by_id
            .last_key_value()
            .map_or(base, |(last, _)| last + 1013)
    }

    fn insert(&mut self, id: u64, mut record: Record) {
        record.insert("id".to_owned(), Value::String(id.to_string()));
        self.by_id.insert(id, Arc::new(record));
    }
}

/// Record number `number` of a bulk insert into `module` (see `POST /_sandbox/records/{module}/bulk`): every
/// mandatory field filled (a text like `Lead 00042`, a picklist's first value), a first name where the module
/// has one, owned and created by `owner` at `at`. The id is the caller's to give.
pub fn bulk_record(
    module: &ModuleDef,
    number: usize,
    owner: &Persona,
    at: OffsetDateTime,
) -> Record {
    let mut record = Record::new();
    for def in module.fields.iter().filter(|def| def.mandatory) {
        let value = match def.picklist.first() {
            Some(first) => json!(first),
            None => json!(format!("{} {number:05}", module.singular_label)),
        };
        record.insert(def.api_name.to_owned(), value);
    }
    if module.field("First_Name").is_some() {
        record.insert("First_Name".into(), json!("Bulk"));
    }
    if module.field("Full_Name").is_some()
        && let Some(last) = record.get("Last_Name").and_then(Value::as_str)
    {
        let full = format!("Bulk {last}");
        record.insert("Full_Name".into(), json!(full));
    }
    stamp(&mut record, owner, at);
    record
}

/// The first id of each module's seeded records; 19-digit strings like Zoho's.
pub fn id_base(module: &str) -> u64 {
    match module {
        "Leads" => 6_003_219_192_000_100_000,
        "Contacts" => 6_003_219_192_000_200_000,
        "Accounts" => 6_003_219_192_000_300_000,
        "Deals" => 6_003_219_192_000_400_000,
        "Courses" => 6_003_219_192_000_500_000,
        _ => 6_003_219_192_000_900_000,
    }
}

/// Formats `at` as Zoho does: ISO-8601 in the org's time zone, whole seconds.
pub fn zoho_datetime(at: OffsetDateTime) -> String {
    let at = at.replace_nanosecond(0).unwrap_or(at).to_offset(ORG_OFFSET);
    at.format(&Rfc3339).unwrap_or_default()
}

fn zoho_date(at: OffsetDateTime) -> String {
    let date = at.to_offset(ORG_OFFSET).date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// First names (as written, as in an email address): Indian and international, some non-ASCII.
const FIRST_NAMES: &[(&str, &str)] = &[
    ("Aarav", "aarav"),
    ("Ananya", "ananya"),
    ("Diya", "diya"),
    ("Ishaan", "ishaan"),
    ("Kavya", "kavya"),
    ("Rohan", "rohan"),
    ("Saanvi", "saanvi"),
    ("Vihaan", "vihaan"),
    ("Meera", "meera"),
    ("Nikhil", "nikhil"),
    ("Pooja", "pooja"),
    ("Rahul", "rahul"),
    ("Sneha", "sneha"),
    ("Tanvi", "tanvi"),
    ("Varun", "varun"),
    ("Lakshmi", "lakshmi"),
    ("Karthik", "karthik"),
    ("Divya", "divya"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Chloé", "chloe"),
    ("Renée", "renee"),
    ("Søren", "soren"),
    ("Łukasz", "lukasz"),
    ("Björn", "bjorn"),
    ("Siobhán", "siobhan"),
    ("Amélie", "amelie"),
    ("Mohammed", "mohammed"),
    ("Fatima", "fatima"),
    ("Yusuf", "yusuf"),
    ("Hannah", "hannah"),
    ("Kenji", "kenji"),
    ("Mei", "mei"),
    ("Aoife", "aoife"),
    ("Thandiwe", "thandiwe"),
    ("Gabriel", "gabriel"),
];

const LAST_NAMES: &[(&str, &str)] = &[
    ("Sharma", "sharma"),
    ("Iyer", "iyer"),
    ("Nair", "nair"),
    ("Reddy", "reddy"),
    ("Gupta", "gupta"),
    ("Patel", "patel"),
    ("Menon", "menon"),
    ("Krishnan", "krishnan"),
    ("Banerjee", "banerjee"),
    ("Chatterjee", "chatterjee"),
    ("D'Souza", "dsouza"),
    ("O'Connor", "oconnor"),
    ("O'Brien", "obrien"),
    ("Fernandes", "fernandes"),
    ("Müller", "mueller"),
    ("García", "garcia"),
    ("Nguyễn", "nguyen"),
    ("Kowalski", "kowalski"),
    ("Andersen", "andersen"),
    ("Okafor", "okafor"),
    ("N'Diaye", "ndiaye"),
    ("Rao", "rao"),
    ("Pillai", "pillai"),
    ("Joshi", "joshi"),
    ("Kulkarni", "kulkarni"),
    ("Mukherjee", "mukherjee"),
    ("Singh", "singh"),
    ("Varghese", "varghese"),
    ("Yamamoto", "yamamoto"),
    ("Lindqvist", "lindqvist"),
    ("Ødegaard", "odegaard"),
];

const CITIES: &[&str] = &[
    "Chennai",
    "Bengaluru",
    "Mumbai",
    "Pune",
    "Hyderabad",
    "Kochi",
    "Coimbatore",
    "New Delhi",
    "Kolkata",
    "Ahmedabad",
    "Mysuru",
    "Thiruvananthapuram",
    "Dubai",
    "Singapore",
    "London",
    "Toronto",
];

const MAIL_DOMAINS: &[&str] = &["example.com", "example.in", "mail.example.org"];

const ENQUIRY_NOTES: &[&str] = &[
    "Asked about weekend batches.",
    "Wants an EMI option for the fee.",
    "Working professional; evening classes only.",
    "Final-year student, looking for a placement-oriented course.",
    "Requested the syllabus by email.",
    "Switching careers from accounting.",
];

const COMPANIES: &[(&str, &str, &str)] = &[
    ("Kalyani Fintech", "Financial Services", "Mumbai"),
    ("Brightline Retail", "Retail", "Bengaluru"),
    ("Coral Bay Analytics", "Analytics", "Chennai"),
    ("Indus Cloudworks", "Cloud Services", "Hyderabad"),
    ("Marigold Health", "Healthcare", "Pune"),
    ("Sahyadri Motors", "Automotive", "Pune"),
    ("BlueRiver Media", "Media", "Kochi"),
    ("Nimbus Travel", "Travel", "New Delhi"),
];

/// When the seeded history ends: fixed, so the data is the same at every start.
fn seed_epoch() -> OffsetDateTime {
    // 2026-10-31T18:00:00+05:30
    OffsetDateTime::from_unix_timestamp(1_793_449_800).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn phone(rng: &mut StdRng) -> String {
    format!(
        "+91 9{:04} {:05}",
        rng.random_range(0..10_000),
        rng.random_range(0..100_000)
    )
}

/// Stamps a seeded record's owner and authors, created and last modified at `at` (the same time: the state file
/// tells a seeded record updated since by a `Modified_Time` that differs).
fn stamp(record: &mut Record, persona: &Persona, at: OffsetDateTime) {
    let when = Value::String(zoho_datetime(at));
    record.insert("Owner".into(), user_ref(persona));
    record.insert("Created_By".into(), user_ref(persona));
    record.insert("Modified_By".into(), user_ref(persona));
    record.insert("Created_Time".into(), when.clone());
    record.insert("Modified_Time".into(), when);
}

/// Number of seeded Leads: more than one page of 200, so paging matters.
pub const SEEDED_LEADS: usize = 263;

/// Builds the seeded records of every API module. Deterministic: the same lists, the same seed.
pub fn seed() -> BTreeMap<&'static str, ModuleRecords> {
    let mut rng = StdRng::seed_from_u64(0x5A_4C_4B_52);
    let staff = &PERSONAS[..3];
    let mut all = BTreeMap::new();

    let mut courses = ModuleRecords::default();
    let mut course_refs = Vec::new();
    for (index, name) in COURSE_NAMES.iter().enumerate() {
        let id = id_base("Courses") + index as u64 * 1013;
        let created = seed_epoch() - Duration::days(400 - index as i64 * 3);
        let mut record = Record::new();
        record.insert("Name".into(), json!(name));
        record.insert(
            "Course_Code".into(),
            json!(format!("ZA-{}", 101 + index * 10)),
        );
        record.insert("Duration_Weeks".into(), json!(6 + (index % 4) * 3));
        record.insert("Fee".into(), json!(18_000 + index as i64 * 4_500));
        record.insert(
            "Mode".into(),
            json!(COURSE_MODES[index % COURSE_MODES.len()]),
        );
        record.insert(
            "Level".into(),
            json!(COURSE_LEVELS[index % COURSE_LEVELS.len()]),
        );
        record.insert(
            "Next_Batch_Start".into(),
            json!(zoho_date(
                seed_epoch() + Duration::days(14 + index as i64 * 7)
            )),
        );
        record.insert("Seats_Available".into(), json!(rng.random_range(4..30)));
        stamp(&mut record, &PERSONAS[0], created);
        course_refs.push(json!({"name": name, "id": id.to_string()}));
        courses.insert(id, record);
    }

    let mut leads = ModuleRecords::default();
    let mut created = seed_epoch() - Duration::days(120);
    for index in 0..SEEDED_LEADS {
        created += Duration::minutes(rng.random_range(60..1_000));
        let (first, first_ascii) = *pick(&mut rng, FIRST_NAMES);
        let (last, last_ascii) = *pick(&mut rng, LAST_NAMES);
        let mut record = Record::new();
        record.insert("First_Name".into(), json!(first));
        record.insert("Last_Name".into(), json!(last));
        record.insert("Full_Name".into(), json!(format!("{first} {last}")));
        record.insert(
            "Email".into(),
            json!(format!(
                "{first_ascii}.{last_ascii}{}@{}",
                index % 97,
                pick(&mut rng, MAIL_DOMAINS)
            )),
        );
        record.insert("Phone".into(), json!(phone(&mut rng)));
        record.insert("City".into(), json!(pick(&mut rng, CITIES)));
        record.insert("Lead_Status".into(), json!(pick(&mut rng, LEAD_STATUSES)));
        record.insert("Lead_Source".into(), json!(pick(&mut rng, LEAD_SOURCES)));
        record.insert(
            "Course_Interest".into(),
            json!(pick(&mut rng, &COURSE_NAMES)),
        );
        record.insert("Company".into(), Value::Null);
        let note = if rng.random_bool(0.3) {
            json!(pick(&mut rng, ENQUIRY_NOTES))
        } else {
            Value::Null
        };
        record.insert("Description".into(), note);
        stamp(&mut record, pick(&mut rng, staff), created);
        leads.insert(id_base("Leads") + index as u64 * 1013, record);
    }

    let mut contacts = ModuleRecords::default();
    let mut enrolled = seed_epoch() - Duration::days(300);
    for index in 0..84 {
        enrolled += Duration::minutes(rng.random_range(1_000..4_000));
        let (first, first_ascii) = *pick(&mut rng, FIRST_NAMES);
        let (last, last_ascii) = *pick(&mut rng, LAST_NAMES);
        let course = pick(&mut rng, &course_refs).clone();
        let mut record = Record::new();
        record.insert("First_Name".into(), json!(first));
        record.insert("Last_Name".into(), json!(last));
        record.insert("Full_Name".into(), json!(format!("{first} {last}")));
        record.insert(
            "Email".into(),
            json!(format!("{first_ascii}.{last_ascii}@students.example.com")),
        );
        record.insert("Phone".into(), json!(phone(&mut rng)));
        record.insert("Mailing_City".into(), json!(pick(&mut rng, CITIES)));
        record.insert("Course".into(), course);
        record.insert(
            "Batch".into(),
            json!(format!(
                "{}-B{}",
                enrolled.year(),
                u8::from(enrolled.month()).div_ceil(3)
            )),
        );
        record.insert("Enrollment_Date".into(), json!(zoho_date(enrolled)));
        record.insert(
            "Student_Status".into(),
            json!(pick(&mut rng, STUDENT_STATUSES)),
        );
        stamp(&mut record, &PERSONAS[1], enrolled);
        contacts.insert(id_base("Contacts") + index as u64 * 1013, record);
    }

    let mut accounts = ModuleRecords::default();
    let mut account_refs = Vec::new();
    for (index, (name, industry, city)) in COMPANIES.iter().enumerate() {
        let id = id_base("Accounts") + index as u64 * 1013;
        let mut record = Record::new();
        record.insert("Account_Name".into(), json!(name));
        record.insert("Industry".into(), json!(industry));
        let slug: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_lowercase();
        record.insert(
            "Website".into(),
            json!(format!("https://{slug}.example.com")),
        );
        record.insert("Phone".into(), json!(phone(&mut rng)));
        record.insert("Billing_City".into(), json!(city));
        stamp(
            &mut record,
            &PERSONAS[0],
            seed_epoch() - Duration::days(200 - index as i64 * 9),
        );
        account_refs.push(json!({"name": name, "id": id.to_string()}));
        accounts.insert(id, record);
    }

    let mut deals = ModuleRecords::default();
    for index in 0..16 {
        let account = pick(&mut rng, &account_refs).clone();
        let course = pick(&mut rng, &course_refs).clone();
        let seats = rng.random_range(8..40);
        let company = account["name"].as_str().unwrap_or_default().to_owned();
        let title = course["name"].as_str().unwrap_or_default().to_owned();
        let created = seed_epoch() - Duration::days(90 - index as i64 * 5);
        let mut record = Record::new();
        record.insert(
            "Deal_Name".into(),
            json!(format!("{company} — {title} batch ({seats} seats)")),
        );
        record.insert("Account_Name".into(), account);
        record.insert("Stage".into(), json!(pick(&mut rng, DEAL_STAGES)));
        record.insert("Amount".into(), json!(seats * 15_000));
        record.insert(
            "Closing_Date".into(),
            json!(zoho_date(created + Duration::days(45))),
        );
        record.insert("Course".into(), course);
        record.insert("Seats".into(), json!(seats));
        record.insert("Description".into(), Value::Null);
        stamp(&mut record, &PERSONAS[0], created);
        deals.insert(id_base("Deals") + index as u64 * 1013, record);
    }

    all.insert("Leads", leads);
    all.insert("Contacts", contacts);
    all.insert("Accounts", accounts);
    all.insert("Deals", deals);
    all.insert("Courses", courses);
    all
}

/// `settings/modules`' description of a module for a caller with `profile`.
pub fn module_json(module: &ModuleDef, profile: &Profile) -> Value {
    let profiles: Vec<Value> = [&ADMINISTRATOR, &ACADEMIC_ADVISOR, &SUPPORT, &STUDENT]
        .into_iter()
        .filter(|candidate| !module.api_supported || candidate.allows(module.api_name))
        .map(|candidate| json!({"name": candidate.name, "id": candidate.id}))
        .collect();
    let viewable = !module.api_supported || profile.allows(module.api_name);
    json!({
        "api_name": module.api_name,
        "module_name": module.module_name,
        "singular_label": module.singular_label,
        "plural_label": module.plural_label,
        "id": module.id,
        "api_supported": module.api_supported,
        "creatable": module.api_supported,
        "editable": module.api_supported && profile.may_edit(module.api_name),
        "deletable": module.api_supported,
        "viewable": viewable,
        "visible": true,
        "show_as_tab": true,
        "generated_type": module.generated_type,
        "status": "visible",
        "profiles": profiles,
    })
}

/// `settings/fields`' description of one field.
pub fn field_json(module: &ModuleDef, index: usize, def: &FieldDef) -> Value {
    let pick_list_values: Vec<Value> = def
        .picklist
        .iter()
        .map(|value| json!({"display_value": value, "actual_value": value}))
        .collect();
    // Field ids sit just below the module's record ids, so they look like Zoho's and never collide.
    let id = id_base(module.api_name) - 90_000 + index as u64 * 7;
    let lookup = match (module.api_name, def.api_name) {
        (_, "Course") => json!({"module": {"api_name": "Courses"}}),
        ("Deals", "Account_Name") => json!({"module": {"api_name": "Accounts"}}),
        _ => json!({}),
    };
    json!({
        "api_name": def.api_name,
        "field_label": def.label,
        "display_label": def.label,
        "data_type": def.data_type,
        "json_type": def.json_type(),
        "id": id.to_string(),
        "custom_field": def.custom,
        "system_mandatory": def.mandatory,
        "read_only": def.read_only,
        "field_read_only": def.read_only,
        "visible": true,
        "length": if def.is_textual() { 255 } else { 16 },
        "pick_list_values": pick_list_values,
        "lookup": lookup,
        "sortable": matches!(def.api_name, "id" | "Created_Time" | "Modified_Time"),
        "searchable": def.is_textual(),
    })
}
