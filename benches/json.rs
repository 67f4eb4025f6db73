//! `cargo bench --bench json`: reading one page of 20 Leads as Zoho sends it (the Leads page's fields, about
//! 5 KB), with serde_json into its `Value` and with sonic-rs into its own. Why records are parsed with sonic-rs.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn leads_page() -> Vec<u8> {
    let names = [
        ("Priya", "Raman"),
        ("Søren", "O'Brien"),
        ("Fatima", "Gupta"),
        ("Nikhil", "Fernandes"),
    ];
    let records: Vec<String> = (0..20)
        .map(|n| {
            let (first, last) = names[n % names.len()];
            format!(
                r#"{{"Created_Time":"2026-10-{day:02}T14:49:00+05:30","Email":"{email}{n}@mail.example.org","First_Name":"{first}","Last_Name":"{last}","Lead_Source":"External Referral","Lead_Status":"Not Contacted","Phone":"+91 94615 710{n:02}","id":"60032191920003654{n:02}"}}"#,
                day = n % 28 + 1,
                email = first.to_lowercase(),
            )
        })
        .collect();
    format!(
        r#"{{"data":[{}],"info":{{"per_page":20,"count":20,"page":1,"more_records":true}}}}"#,
        records.join(",")
    )
    .into_bytes()
}

fn parse(c: &mut Criterion) {
    let body = leads_page();
    let mut group = c.benchmark_group("a page of 20 leads");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("serde_json::Value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(&body).unwrap()))
    });
    group.bench_function("sonic_rs::Value", |b| {
        b.iter(|| black_box(sonic_rs::from_slice::<sonic_rs::Value>(&body).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
