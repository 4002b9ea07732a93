//! `genmsi run --html` and `genmsi report`: the page's structure, and every number on it equal
//! to the JSON report's.

use scraper::{Html, Selector};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod common;
use common::genmsi;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("genmsi-html-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).expect("selector")
}

/// Runs the default scenario once with `--json` and `--html`; returns (report, page, page file).
fn default_run(dir: &Path) -> (Value, String, PathBuf) {
    let page = dir.join("default.html");
    let out = genmsi(&["run", "--json", "--html", page.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let html = std::fs::read_to_string(&page).expect("the page was written");
    (report, html, page)
}

/// Every scalar leaf of `v` as (JSON pointer, value).
fn leaves(v: &Value, at: String, out: &mut Vec<(String, Value)>) {
    let token = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                leaves(x, format!("{at}/{}", token(k)), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{at}/{i}"), out);
            }
        }
        other => out.push((at, other.clone())),
    }
}

/// How the page shows a JSON value (floats with one decimal and flags as on/off, as the text
/// report does).
fn shown(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => format!("{:.1}", n.as_f64().unwrap()),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "on" } else { "off" }.into(),
        other => other.to_string(),
    }
}

#[test]
fn every_number_of_the_report_is_on_the_page_and_equal() {
    let dir = scratch("numbers");
    let (report, html, _) = default_run(&dir);
    let doc = Html::parse_document(&html);
    let mut on_page = BTreeSet::new();
    for el in doc.select(&sel("[data-k]")) {
        let ptr = el.value().attr("data-k").unwrap();
        let want = report
            .pointer(ptr)
            .unwrap_or_else(|| panic!("{ptr} is not in the JSON report"));
        let text: String = el.text().collect();
        assert_eq!(text.trim(), shown(want), "{ptr}");
        on_page.insert(ptr.to_string());
    }
    // Everything the text report prints; the layout, timeline and allocation data are drawn
    // (checked below) and the per-CPU pairs are table columns (checked by row sums).
    let drawn = [
        "/vector_map/",
        "/allocations/",
        "/timeline/",
        "/marks/",
        "/vmm/modelled/",
    ];
    let mut all = Vec::new();
    leaves(&report, String::new(), &mut all);
    let missing: Vec<&String> = all
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !drawn.iter().any(|d| p.starts_with(d)) && !p.contains("/per_cpu/"))
        .filter(|p| !on_page.contains(*p))
        .collect();
    assert!(missing.is_empty(), "not on the page: {missing:?}");
    assert!(on_page.len() > 100, "only {} numbers", on_page.len());
}

#[test]
fn busiest_rows_show_their_cpu_and_add_up_in_text_and_page() {
    let dir = scratch("busiest");
    let (report, html, _) = default_run(&dir);
    let doc = Html::parse_document(&html);
    let rows: Vec<_> = doc.select(&sel("#busiest tbody tr")).collect();
    assert_eq!(rows.len(), report["busiest"].as_array().unwrap().len());
    for (row, want) in rows.iter().zip(report["busiest"].as_array().unwrap()) {
        let cells: Vec<String> = row
            .select(&sel("td"))
            .map(|c| c.text().collect::<String>())
            .collect();
        // IRQ, the CPU columns (and "other CPUs"), total, store, device.
        let counts: Vec<u64> = cells[1..cells.len() - 3]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        let total: u64 = cells[cells.len() - 3].parse().unwrap();
        assert_eq!(total, want["total"].as_u64().unwrap());
        assert_eq!(counts.iter().sum::<u64>(), total, "row {cells:?}");
        let busiest_cpu = want["per_cpu"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_u64().unwrap())
            .max()
            .unwrap();
        assert!(counts.contains(&busiest_cpu), "row {cells:?}");
    }
    // The text report: the same rows, the same sums.
    let out = genmsi(&["run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Busiest irqs"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(table.len(), rows.len());
    for line in table {
        let nums: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map_while(|w| w.parse().ok())
            .collect();
        let (total, counts) = nums.split_last().unwrap();
        assert_eq!(counts.iter().sum::<u64>(), *total, "{line}");
        assert!(counts.iter().any(|&n| n > 0), "{line}");
    }
    assert!(text.contains("interrupts lost (modelled)"));
}

#[test]
fn the_page_draws_the_layout_timeline_allocations_and_vmm() {
    let dir = scratch("structure");
    let (report, html, _) = default_run(&dir);
    let doc = Html::parse_document(&html);
    let cpus = report["cpus"].as_u64().unwrap() as usize;
    assert_eq!(doc.select(&sel("#heatmap rect.cpu")).count(), cpus);
    // Each CPU's tooltip names its used vectors, which add up with the map.
    let map = &report["vector_map"];
    for (c, cell) in doc.select(&sel("#heatmap rect.cpu title")).enumerate() {
        let text: String = cell.text().collect();
        let devices: u64 = map["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["vectors"][c].as_u64().unwrap() + d["managed"][c].as_u64().unwrap())
            .sum();
        let used = devices
            + ["managed_unused", "moving", "other"]
                .iter()
                .map(|k| map[k][c].as_u64().unwrap())
                .sum::<u64>();
        assert!(
            text.starts_with(&format!("CPU {c}: {used} used of ")),
            "{text}"
        );
        let sum = used + map["system"][c].as_u64().unwrap() + map["free"][c].as_u64().unwrap();
        assert_eq!(sum, 256, "CPU {c}: every vector has one owner");
    }
    let buckets = report["timeline"]["raised"].as_array().unwrap().len();
    assert!(buckets > 10);
    let lines: Vec<_> = doc.select(&sel("#timeline polyline.series")).collect();
    assert_eq!(lines.len(), 5);
    for l in &lines {
        let points = l.value().attr("points").unwrap().split(' ').count();
        assert_eq!(points, buckets);
    }
    let raised: u64 = report["timeline"]["raised"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(raised, report["raised"].as_u64().unwrap());
    assert_eq!(
        doc.select(&sel("#timeline g.mark")).count(),
        report["marks"].as_array().unwrap().len()
    );
    assert_eq!(
        report["marks"].as_array().unwrap().len(),
        report["events"].as_array().unwrap().len()
    );
    // The allocation tables' data is the report's, row for row.
    let data: Value = serde_json::from_str(
        &doc.select(&sel("script#alloc-data"))
            .next()
            .unwrap()
            .text()
            .collect::<String>(),
    )
    .unwrap();
    let devices = report["allocations"].as_array().unwrap();
    assert_eq!(data.as_array().unwrap().len(), devices.len());
    for (d, rows) in devices.iter().zip(data.as_array().unwrap()) {
        let want: Vec<Value> = d["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                serde_json::json!([
                    r["index"],
                    r["irq"],
                    r["cpu"],
                    r["vector"],
                    r["irte"],
                    r["state"]
                ])
            })
            .collect();
        assert_eq!(rows.as_array().unwrap(), &want, "{}", d["device"]);
        let vectors = report["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == d["device"])
            .unwrap()["vectors"]
            .as_u64()
            .unwrap();
        assert_eq!(want.len() as u64, vectors, "{}", d["device"]);
    }
    // Remapping is on: every active row names its IRTE.
    assert!(devices.iter().all(|d| d["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"].as_str().unwrap().starts_with("active"))
        .all(|r| r["irte"].is_u64() && r["vector"].is_u64())));
    // The VMM figures that come from a model say so, in the table and in the charts.
    let vmm_rows: Vec<String> = doc
        .select(&sel("#vmm tbody tr"))
        .map(|r| r.text().collect())
        .collect();
    for name in ["interrupts raised", "interrupts lost"] {
        let row = vmm_rows.iter().find(|r| r.starts_with(name)).unwrap();
        assert!(row.ends_with("modelled"), "{row}");
    }
    assert_eq!(doc.select(&sel("#vmm figure em.modelled")).count(), 2);
    assert!(doc.select(&sel("#kvm")).next().is_none());
}

#[test]
fn a_saved_report_renders_the_same_page_and_takes_measured_kvm_figures() {
    let dir = scratch("saved");
    let (report, html, _) = default_run(&dir);
    let saved = dir.join("run.json");
    std::fs::write(&saved, report.to_string()).unwrap();
    let again = dir.join("again.html");
    let out = genmsi(&[
        "report",
        saved.to_str().unwrap(),
        "--html",
        again.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&again).unwrap(), html);

    // A saved `genmsi bench kvm-grow --json`: its figures are shown as measured.
    let strategy = |lost: u64, routes: u64| {
        serde_json::json!({"unmasked_max": 200, "routes_max": routes, "routes_end": routes / 2,
            "routing_calls": 7, "routing_seconds": 0.0021, "host_seconds": 0.0123,
            "host_us_per_unmask": 1333.4114, "fired": 1000 + lost, "counted": 1000, "lost": lost,
            "dropped_while_disabled": lost})
    };
    let kvm = serde_json::json!({"vectors": 256, "kvm": true, "on_demand": strategy(0, 200),
        "eager": strategy(0, 256), "baseline": strategy(31, 256)});
    let kvm_file = dir.join("kvm.json");
    std::fs::write(&kvm_file, kvm.to_string()).unwrap();
    let with_kvm = dir.join("kvm.html");
    let out = genmsi(&[
        "report",
        saved.to_str().unwrap(),
        "--html",
        with_kvm.to_str().unwrap(),
        "--kvm",
        kvm_file.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = Html::parse_document(&std::fs::read_to_string(&with_kvm).unwrap());
    let mut cells = 0;
    for el in doc.select(&sel("[data-kvm]")) {
        let ptr = el.value().attr("data-kvm").unwrap();
        let want = kvm.pointer(ptr).unwrap();
        let text: String = el.text().collect();
        match (ptr.rsplit('/').next().unwrap(), want.as_f64()) {
            // Times carry their unit and three significant digits: read back, they are the
            // JSON's figure within the rounding.
            ("routing_seconds" | "host_seconds" | "host_us_per_unmask", Some(f)) => {
                let seconds = if ptr.ends_with("_us_per_unmask") {
                    f * 1e-6
                } else {
                    f
                };
                assert!(shown_seconds_match(&text, seconds), "{ptr}: {text} for {f}");
            }
            _ => assert_eq!(text, want.to_string(), "{ptr}"),
        }
        cells += 1;
    }
    assert_eq!(cells, 3 * 11);
    // Measured times read as times, rounded: 1333.4114 microseconds per unmask is 1.33 ms.
    assert!(doc
        .select(&sel("[data-kvm='/eager/host_us_per_unmask']"))
        .any(|e| e.text().collect::<String>() == "1.33 ms"));
    assert_eq!(doc.select(&sel("#vmm figure em.measured")).count(), 11);

    // Something that is not a run report is refused with a clear error.
    let out = genmsi(&[
        "report",
        kvm_file.to_str().unwrap(),
        "--html",
        with_kvm.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a `genmsi run --json` report"));
}

/// `text` is "<number> <unit>" with a time unit, and within half a unit of its last digit of
/// `seconds` (three significant digits).
fn shown_seconds_match(text: &str, seconds: f64) -> bool {
    let Some((number, unit)) = text.split_once(' ') else {
        return false;
    };
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "\u{b5}s" => 1e-6,
        "ns" => 1e-9,
        _ => return false,
    };
    let Ok(shown) = number.parse::<f64>() else {
        return false;
    };
    let decimals = number.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    let digits = number
        .trim_start_matches(['-', '0', '.'])
        .replace('.', "")
        .len();
    let three_digits_in_range = (1.0..1000.0).contains(&shown.abs()) && digits == 3;
    (seconds == 0.0 || three_digits_in_range)
        && (shown * scale - seconds).abs() <= 0.5 * 10f64.powi(-decimals) * scale * 1.0001
}
