//! README.md is a promise: the names it gives (flags, environment variables, tables, metrics) are the code's,
//! and the claims that once went stale stay corrected. The fleet recipe is run for real in the `api` tests
//! (`readme_fleet`).

use std::path::Path;
use std::process::Command;

fn repository_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn readme() -> String {
    repository_file("README.md")
}

/// The README's section under `heading` (up to the next heading of the same level or above).
fn section(readme: &str, heading: &str) -> String {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has the section {heading:?}"));
    let body = &readme[start + heading.len() + 2..];
    let end = body
        .lines()
        .scan(0, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, line)| {
            let hashes = line.chars().take_while(|c| *c == '#').count();
            hashes > 0 && hashes <= level && line[hashes..].starts_with(' ')
        })
        .map_or(body.len(), |(at, _)| at);
    body[..end].to_owned()
}

/// The texts between backticks.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Every Rust source file under `src/`, concatenated.
/// Where each file begins in [`sources`].
const FILE_START: &str = "\n\u{0}file\n";

/// What the source files hold before their `#[cfg(test)]` module: the portal's own code and docs.
fn outside_tests(sources: &str) -> String {
    sources
        .split(FILE_START)
        .map(|file| file.split("#[cfg(test)]").next().unwrap_or_default())
        .collect()
}

/// Every source file under src/, one after the other.
fn sources() -> String {
    fn walk(dir: &Path, into: &mut String) {
        for entry in std::fs::read_dir(dir).expect("src/ readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push_str(FILE_START);
                into.push_str(&std::fs::read_to_string(&path).expect("a source file"));
            }
        }
    }
    let mut all = String::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
    all
}

#[test]
fn every_flag_and_variable_of_the_configuration_table_is_one_serve_takes() {
    let help = Command::new(env!("CARGO_BIN_EXE_zylker-portal"))
        .args(["serve", "--help"])
        .output()
        .expect("zylker-portal serve --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let table = section(&readme(), "## Configuration");
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `")).collect();
    assert!(rows.len() >= 10, "the configuration table: {rows:?}");
    for row in rows {
        let named = row.split('|').nth(1).expect("a flag column");
        let env = row.split('|').nth(2).expect("an env column");
        for flag in quoted(named) {
            let flag = flag.split_whitespace().next().expect("a flag");
            assert!(
                help.contains(flag),
                "README names {flag}, `serve --help` does not:\n{help}"
            );
        }
        for variable in quoted(env) {
            assert!(
                help.contains(&format!("env: {variable}")),
                "README names {variable}, `serve --help` does not:\n{help}"
            );
        }
    }
}

/// Tables of earlier versions that the README may name (to say they can be dropped), and the code must not
/// create any more.
const TABLES_OF_EARLIER_VERSIONS: &[&str] = &["portal_ended_sign_ins", "portal_pending_logins"];

#[test]
fn every_table_of_the_portal_the_readme_names_is_one_the_code_creates() {
    let readme = readme();
    let sources = sources();
    let tables: Vec<&str> = quoted(&readme)
        .into_iter()
        .filter(|word| {
            word.starts_with("portal_") && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .collect();
    assert!(tables.contains(&"portal_sign_ins"), "{tables:?}");
    for table in tables {
        if TABLES_OF_EARLIER_VERSIONS.contains(&table) {
            for line in readme.lines().filter(|line| line.contains(table)) {
                assert!(
                    line.contains(&format!("`{table}` of earlier versions")),
                    "README names {table} as if the code made it: {line:?}"
                );
            }
            // A unit test may make one, as an earlier version left it; the portal's own code names it nowhere.
            assert!(
                !outside_tests(&sources).contains(table),
                "{table} is said to be of earlier versions, but src/ still names it"
            );
            continue;
        }
        assert!(
            sources.contains(&format!("\"{table}")) || sources.contains(&format!(" {table} ")),
            "README names the table {table}, which nothing in src/ creates"
        );
    }
}

#[test]
fn every_metric_the_readme_lists_is_one_the_portal_exports() {
    let readme = readme();
    let telemetry = repository_file("src/telemetry.rs");
    let metrics: Vec<&str> = readme
        .lines()
        .filter(|line| {
            line.starts_with("| `zoho_")
                || line.starts_with("| `portal_")
                || line.starts_with("| `token_")
        })
        .filter_map(|line| quoted(line).into_iter().next())
        .map(|name| name.split('{').next().expect("a name"))
        .collect();
    assert!(metrics.len() >= 8, "the metrics table: {metrics:?}");
    for metric in metrics {
        assert!(
            telemetry.contains(&format!("\"{metric}\"")),
            "README lists the metric {metric}, src/telemetry.rs does not export it"
        );
    }
}

#[test]
fn the_readme_is_the_guide_and_the_benchmarks_live_in_their_own_page() {
    let readme = readme();
    assert!(
        readme.contains("(docs/benchmarks.md)"),
        "the README links the benchmarks page"
    );
    let benchmarks = repository_file("docs/benchmarks.md");
    assert!(benchmarks.contains("## Token stores") && benchmarks.contains("## Portal"));
    let performance = section(&readme, "## Performance");
    let table_rows = performance.lines().filter(|l| l.starts_with('|')).count();
    assert!(
        table_rows <= 12,
        "the README's Performance section is a summary ({table_rows} table rows); the tables go to docs/benchmarks.md"
    );
    let two_commands = section(&readme, "## The two commands");
    assert!(two_commands.contains("cargo run --release") && two_commands.contains(".ci/run"));
    assert!(
        two_commands.contains("minutes"),
        "the README says how long the first build takes"
    );
}

#[test]
fn claims_that_went_stale_stay_corrected() {
    let readme = readme();
    for stale in [
        // Sign-ins on the database stores are tables shared by the fleet, not each process's memory.
        "memory too, for now",
        "need a load balancer that keeps each browser",
        // Sessions are kept on the server; the cookie only names one.
        "sessions live in cookies",
    ] {
        assert!(!readme.contains(stale), "README.md says again: {stale:?}");
    }
    assert!(
        section(&readme, "#### Sharing the MySQL table with Zoho's SDKs")
            .contains("`email:org_id`"),
        "the SDK-sharing section says how the portal names its users"
    );
}

/// Every file under `src/` and `tests/` (Rust, Python and the rest), by its path inside the repository.
fn source_and_test_files() -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, into: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.ends_with("node_modules") {
                // Packages npm installed for the browser test (axe-core): not the project's files.
                continue;
            }
            if path.is_dir() {
                walk(root, &path, into);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                into.push((name, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(root, &root.join("src"), &mut files);
    walk(root, &root.join("tests"), &mut files);
    files
}

/// Whether `text` speaks of "the seed" (`the seed`, `the seed's`, `The seed`; not `the seeded`).
fn says_the_seed(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.match_indices("the seed").any(|(at, found)| {
        !lower[at + found.len()..]
            .chars()
            .next()
            .is_some_and(char::is_alphanumeric)
    })
}

#[test]
fn every_file_that_says_the_seed_names_the_document_it_is() {
    let files = source_and_test_files();
    assert!(
        files.len() > 50,
        "src/ and tests/ were read: {}",
        files.len()
    );
    assert!(says_the_seed("the seed's table") && !says_the_seed("the seeded records"));
    let unnamed: Vec<&str> = files
        .iter()
        .filter(|(_, text)| says_the_seed(text) && !text.contains("Kaizen #192"))
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        unnamed.is_empty(),
        "these files say \"the seed\" without naming it (Zoho's Kaizen #192 article, \"Custom token \
         persistence\"): {unnamed:?}"
    );
}
