//! `--html`: one self-contained HTML page of a run, rendered from the run's JSON report (so a
//! saved `genmsi run --json` gives the same page as the run itself).
//!
//! The page holds inline SVG drawn here (a heatmap of vector use per CPU, stacked bars of the
//! same by owner, a timeline with the events marked, the VMM comparison) and a few lines of
//! plain JavaScript that sort and page the tables. Every number the text report prints is on
//! the page in an element whose `data-k` attribute is its JSON pointer in the report, which is
//! how the tests check that the page and the report agree to the digit.

use genmsi_sim::report::{busiest_columns, busiest_other, BUSIEST_CPU_COLUMNS};
use serde_json::Value;
use std::fmt::Write;

/// Colours of the devices, in report order (Tableau 10).
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
/// Exceptions and system vectors.
const SYSTEM: &str = "#d0d0d0";
/// Vectors of platform irqs (no simulated device).
const OTHER: &str = "#555555";
/// CPUs per heatmap row and per node group in the bars (a node of the scenarios' machines).
const NODE: usize = 64;
/// Above this many CPUs the bars show one node per bar.
const BARS_PER_CPU_UP_TO: usize = 128;
/// Chart width in pixels.
const WIDTH: f64 = 960.0;

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map_or(&[], Vec::as_slice)
}

fn nums(v: &Value, key: &str) -> Vec<f64> {
    arr(v, key)
        .iter()
        .map(|x| x.as_f64().unwrap_or(0.0))
        .collect()
}

/// A JSON value shown as the text report shows it: floats with one decimal, flags on/off.
fn shown(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => format!("{:.1}", n.as_f64().unwrap_or(0.0)),
        Value::String(t) => t.clone(),
        // The report's only flag is `remapping`, which the text report prints as on/off.
        Value::Bool(b) => if *b { "on" } else { "off" }.into(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A `<td>` holding the value at JSON pointer `ptr` of `root`.
fn td(root: &Value, ptr: &str) -> String {
    let v = root.pointer(ptr).unwrap_or(&Value::Null);
    let class = if v.is_number() { " class=\"n\"" } else { "" };
    format!("<td{class} data-k=\"{}\">{}</td>", esc(ptr), esc(&shown(v)))
}

/// An inline value at JSON pointer `ptr` of `root`.
fn span(root: &Value, ptr: &str) -> String {
    let v = root.pointer(ptr).unwrap_or(&Value::Null);
    format!("<span data-k=\"{}\">{}</span>", esc(ptr), esc(&shown(v)))
}

/// The page for a run's JSON report `run`, with a saved `genmsi bench kvm-grow --json` result
/// `kvm` when one is given.
pub fn render(run: &Value, kvm: Option<&Value>) -> String {
    let mut o = String::with_capacity(1 << 20);
    let title = format!("genmsi run `{}`", s(run, "scenario"));
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>{CSS}</style></head><body>",
        esc(&title)
    );
    header(&mut o, run);
    summary(&mut o, run);
    heatmap(&mut o, run);
    bars(&mut o, run);
    timeline(&mut o, run);
    devices(&mut o, run);
    busiest(&mut o, run);
    allocations(&mut o, run);
    events(&mut o, run);
    vmm(&mut o, run, kvm);
    let _ = write!(o, "<script>{JS}</script>\n</body></html>\n");
    o
}

/// The page for `genmsi host`: the host's vector use per CPU (heatmap and bars, from a
/// `vector_map` in the run report's layout), its PCI functions and what could not be read.
pub fn render_host(host: &Value, vector_map: &Value) -> String {
    let mut o = String::with_capacity(1 << 18);
    let title = format!("genmsi host `{}`", s(host, "source"));
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>{CSS}</style></head><body><h1>{}</h1>",
        esc(&title),
        esc(&title)
    );
    let estimated = s(host, "vectors_from") == "estimated";
    let _ =
        write!(
        o,
        "<p>Kernel {}; {} CPUs online of {}; interrupt remapping {}. Vector use per CPU {}.</p>",
        esc(host["kernel"].as_str().unwrap_or("unknown")),
        arr(host, "online").len(),
        u(host, "cpus_possible"),
        if host["remapping"].as_bool().unwrap_or(false) { "on" } else { "off" },
        if estimated {
            "<em class=\"bad\">estimated</em> (one vector per irq on its effective CPU; the \
             kernel's debugfs VECTOR table was not readable)"
        } else {
            "read from the kernel's debugfs VECTOR table"
        }
    );
    let run = serde_json::json!({ "vector_map": vector_map });
    heatmap(&mut o, &run);
    bars(&mut o, &run);
    o.push_str(
        "<section id=\"devices\"><h2>PCI functions with MSI or MSI-X</h2><table class=\"sortable\">\
         <thead><tr><th>address</th><th>class</th><th>vendor:device</th><th>driver</th>\
         <th>mode</th><th>irqs</th><th>MSI-X table</th><th>MSI</th></tr></thead><tbody>",
    );
    let opt = |v: &Value| v.as_u64().map_or("?".to_string(), |n| n.to_string());
    for d in arr(host, "devices") {
        let irqs = arr(d, "msi_irqs").len();
        if irqs == 0 && d["msix_table"].is_null() && d["msi_capable"].is_null() {
            continue;
        }
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{:06x}</td><td>{:04x}:{:04x}</td><td>{}</td><td>{}</td>\
             <td class=\"n\">{irqs}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(s(d, "address")),
            u(d, "class"),
            u(d, "vendor"),
            u(d, "device"),
            esc(d["driver"].as_str().unwrap_or("-")),
            esc(d["msi_mode"].as_str().unwrap_or("-")),
            opt(&d["msix_table"]),
            opt(&d["msi_capable"]),
        );
    }
    o.push_str("</tbody></table></section><section id=\"unreadable\"><h2>Not readable</h2>");
    let unreadable = arr(host, "unreadable");
    if unreadable.is_empty() {
        o.push_str("<p>Everything was readable.</p>");
    } else {
        o.push_str("<ul>");
        for e in unreadable {
            let _ = write!(
                o,
                "<li><code>{}</code>: {}</li>",
                esc(e[0].as_str().unwrap_or("")),
                esc(e[1].as_str().unwrap_or(""))
            );
        }
        o.push_str("</ul>");
    }
    let _ = write!(o, "</section><script>{JS}</script>\n</body></html>\n");
    o
}

fn header(o: &mut String, r: &Value) {
    let ok = u(r, "lost") == 0
        && u(r, "misdelivered") == 0
        && u(r, "blocked") == 0
        && u(r, "pending") == 0
        && arr(r, "unexpected").is_empty();
    let _ = writeln!(
        o,
        "<header><h1>genmsi simulation <code data-k=\"/scenario\">{}</code></h1>\
         <p>{} CPUs, remapping {}, seed {}, {} steps. \
         <strong class=\"{}\">result: {}</strong> (lost {}, misdelivered {}, unexpected {})</p>\
         <p>Drivers' quiesce {}; service (modelled): handlers hold their vector {} step(s), \
         interrupts disabled at {}% of arrivals for up to {} step(s).</p>\
         <p class=\"note\">Every figure on this page comes from the simulated machine (the real \
         genmsi crates on simulated hardware); the VMM section says which figures are modelled \
         and which were measured.</p></header>",
        esc(s(r, "scenario")),
        span(r, "/cpus"),
        span(r, "/remapping"),
        span(r, "/seed"),
        span(r, "/steps"),
        if ok { "ok" } else { "bad" },
        if ok { "ok" } else { "FAILED" },
        span(r, "/lost"),
        span(r, "/misdelivered"),
        arr(r, "unexpected").len(),
        span(r, "/quiesce"),
        span(r, "/service/handler_steps"),
        span(r, "/service/irqs_off_percent"),
        span(r, "/service/irqs_off_steps"),
    );
    for i in 0..arr(r, "unexpected").len() {
        let _ = write!(
            o,
            "<p class=\"bad\">UNEXPECTED: {}</p>",
            span(r, &format!("/unexpected/{i}"))
        );
    }
}

fn summary(o: &mut String, r: &Value) {
    o.push_str("<section id=\"interrupts\"><h2>Interrupts</h2><table class=\"kv\">");
    for key in [
        "raised",
        "delivered",
        "blocked",
        "lost",
        "pending",
        "merged",
        "misdelivered",
        "stale",
    ] {
        let _ = write!(o, "<tr><th>{key}</th>{}</tr>", td(r, &format!("/{key}")));
    }
    for (key, name) in [
        ("retriggered", "retriggered"),
        ("pending_at_events", "pending at events"),
        ("held_in_irr", "old vectors held in IRR/ISR at cleanup"),
        (
            "released_after_grace",
            "freed resources released after their grace",
        ),
        ("held_at_end", "freed resources still held at the end"),
        ("quiesced", "quiesced"),
        ("in_flight_at_events", "in flight at events"),
    ] {
        let _ = write!(o, "<tr><th>{name}</th>{}</tr>", td(r, &format!("/{key}")));
    }
    o.push_str("</table><ul>");
    for (map, what) in [
        ("lost_reasons", "lost"),
        ("blocked_reasons", "blocked"),
        ("misdelivered_reasons", "misdelivered"),
        ("stale_reasons", "stale"),
    ] {
        for reason in r[map].as_object().into_iter().flat_map(|m| m.keys()) {
            let _ = write!(
                o,
                "<li>{what}: {}: {}</li>",
                esc(reason),
                span(r, &format!("/{map}/{}", pointer_token(reason)))
            );
        }
    }
    for wait in r["waits"].as_object().into_iter().flat_map(|m| m.keys()) {
        let _ = write!(
            o,
            "<li>wait x{}: {}</li>",
            span(r, &format!("/waits/{}", pointer_token(wait))),
            esc(wait)
        );
    }
    let _ = write!(
        o,
        "<li>injected: {} spurious writes ({} blocked), {} wrong-requester-id writes \
         ({} blocked, {} delivered)</li>",
        span(r, "/injected/spurious"),
        span(r, "/injected/spurious_blocked"),
        span(r, "/injected/wrong_rid"),
        span(r, "/injected/wrong_rid_blocked"),
        span(r, "/injected/wrong_rid_delivered"),
    );
    if let Some(faults) = r["faults"].as_object() {
        for reason in faults.keys() {
            let _ = write!(
                o,
                "<li>remapping fault {}: {}</li>",
                esc(reason),
                span(r, &format!("/faults/{}", pointer_token(reason)))
            );
        }
    }
    let _ = write!(
        o,
        "<li>old vectors released after moves: {}</li></ul>",
        span(r, "/vectors_released")
    );
    let _ = write!(
        o,
        "<p>Vectors per CPU: min {} max {} mean {} total {}; busiest:",
        span(r, "/vectors/min"),
        span(r, "/vectors/max"),
        span(r, "/vectors/mean"),
        span(r, "/vectors/total"),
    );
    for i in 0..arr(&r["vectors"], "top").len() {
        let _ = write!(
            o,
            " cpu{}={}",
            span(r, &format!("/vectors/top/{i}/0")),
            span(r, &format!("/vectors/top/{i}/1"))
        );
    }
    o.push_str("</p></section>\n");
}

/// A JSON pointer token (RFC 6901 escapes).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Per CPU, what holds its vectors: (device index or None for "other"/"moving", count).
struct CpuUse {
    online: bool,
    system: f64,
    free: f64,
    managed_unused: f64,
    moving: f64,
    other: f64,
    /// Per device: (ordinary, managed).
    devices: Vec<(f64, f64)>,
}

impl CpuUse {
    fn used(&self) -> f64 {
        self.managed_unused
            + self.moving
            + self.other
            + self.devices.iter().map(|d| d.0 + d.1).sum::<f64>()
    }

    fn usable(&self) -> f64 {
        (256.0 - self.system).max(1.0)
    }

    /// The device holding most vectors here.
    fn dominant(&self) -> Option<usize> {
        let (i, best) = self
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| (i, d.0 + d.1))
            .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
        (best > 0.0).then_some(i)
    }

    fn describe(&self, names: &[String]) -> String {
        let mut t = format!(
            "{} used of {} ({} system, {} free)",
            self.used(),
            self.usable(),
            self.system,
            self.free
        );
        for (name, d) in names.iter().zip(&self.devices) {
            if d.0 + d.1 > 0.0 {
                let _ = write!(t, "\n{name}: {}", d.0 + d.1);
                if d.1 > 0.0 {
                    let _ = write!(t, " ({} managed)", d.1);
                }
            }
        }
        for (what, n) in [
            ("managed reservations unused", self.managed_unused),
            ("old vectors of moves in progress", self.moving),
            ("platform irqs", self.other),
        ] {
            if n > 0.0 {
                let _ = write!(t, "\n{what}: {n}");
            }
        }
        if !self.online {
            t.push_str("\noffline");
        }
        t
    }
}

fn cpu_use(r: &Value) -> (Vec<String>, Vec<CpuUse>) {
    let m = &r["vector_map"];
    let cpus = u(m, "cpus") as usize;
    let online = arr(m, "online");
    let (system, free, unused, moving, other) = (
        nums(m, "system"),
        nums(m, "free"),
        nums(m, "managed_unused"),
        nums(m, "moving"),
        nums(m, "other"),
    );
    let devs: Vec<(String, Vec<f64>, Vec<f64>)> = arr(m, "devices")
        .iter()
        .map(|d| {
            (
                s(d, "device").to_string(),
                nums(d, "vectors"),
                nums(d, "managed"),
            )
        })
        .collect();
    let at = |v: &[f64], c: usize| v.get(c).copied().unwrap_or(0.0);
    let per_cpu = (0..cpus)
        .map(|c| CpuUse {
            online: online.get(c).and_then(Value::as_bool).unwrap_or(true),
            system: at(&system, c),
            free: at(&free, c),
            managed_unused: at(&unused, c),
            moving: at(&moving, c),
            other: at(&other, c),
            devices: devs.iter().map(|d| (at(&d.1, c), at(&d.2, c))).collect(),
        })
        .collect();
    (devs.into_iter().map(|d| d.0).collect(), per_cpu)
}

fn legend(o: &mut String, names: &[String]) {
    o.push_str("<p class=\"legend\">");
    for (i, n) in names.iter().enumerate() {
        let _ = write!(
            o,
            "<span><i style=\"background:{}\"></i>{}</span>",
            PALETTE[i % PALETTE.len()],
            esc(n)
        );
    }
    let _ = write!(
        o,
        "<span><i class=\"managed\" style=\"background:#888\"></i>managed (hatched)</span>\
         <span><i style=\"background:{OTHER}\"></i>platform irqs</span>\
         <span><i class=\"moving\"></i>old vectors of moves in progress</span>\
         <span><i class=\"unused\"></i>managed reservations unused</span>\
         <span><i style=\"background:{SYSTEM}\"></i>system (exceptions, timer, IPIs)</span>\
         <span><i class=\"offline\"></i>offline CPU</span></p>"
    );
}

const PATTERNS: &str = "<defs>\
    <pattern id=\"hatch\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
    <rect width=\"2\" height=\"4\" fill=\"#fff\" fill-opacity=\"0.55\"/></pattern>\
    <pattern id=\"unused\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
    <rect width=\"4\" height=\"4\" fill=\"#eee\"/><rect width=\"1.5\" height=\"4\" fill=\"#999\"/></pattern>\
    <pattern id=\"moving\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\">\
    <rect width=\"4\" height=\"4\" fill=\"#fff\"/><circle cx=\"2\" cy=\"2\" r=\"1.2\" fill=\"#c00\"/></pattern>\
    <pattern id=\"offline\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\">\
    <rect width=\"6\" height=\"6\" fill=\"#fff\"/><path d=\"M0,0 L6,6 M6,0 L0,6\" stroke=\"#999\"/></pattern>\
    </defs>";

/// One cell per CPU (a row per node of 64 CPUs on big machines, 16 per row on small ones):
/// the colour of the device holding most vectors there, deeper the more of the CPU's usable
/// vectors are in use.
fn heatmap(o: &mut String, r: &Value) {
    let (names, per_cpu) = cpu_use(r);
    let cols = if per_cpu.len() > 4 * NODE { NODE } else { 16 };
    let rows = per_cpu.len().div_ceil(cols).max(1);
    let left = 90.0;
    let cell = ((WIDTH - left - 10.0) / cols as f64).min(48.0).floor();
    let (w, h) = (left + cols as f64 * cell + 10.0, rows as f64 * cell + 24.0);
    let _ = write!(
        o,
        "<section id=\"heatmap\"><h2>Vector use per CPU</h2>\
         <p>One cell per CPU, {cols} CPUs per row{}; colour: the device holding most of the \
         CPU's vectors (the first in the legend on a tie); depth: the share of its usable vectors in use{}. Hover a cell for its \
         breakdown.</p>",
        if cols == NODE { " (a node)" } else { "" },
        if cell >= 30.0 {
            " (the number: vectors in use)"
        } else {
            ""
        }
    );
    legend(o, &names);
    let _ = write!(
        o,
        "<svg class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\" aria-label=\"vector use per CPU\">{PATTERNS}"
    );
    let label_every = (rows / 16).max(1);
    for row in (0..rows).step_by(label_every) {
        let first = row * cols;
        let last = (first + cols).min(per_cpu.len()).saturating_sub(1);
        let _ = write!(
            o,
            "<text x=\"0\" y=\"{:.1}\" class=\"axis\">CPU {first}-{last}</text>",
            row as f64 * cell + cell.min(14.0) * 0.8
        );
    }
    for (c, cu) in per_cpu.iter().enumerate() {
        let (x, y) = (left + (c % cols) as f64 * cell, (c / cols) as f64 * cell);
        let fill = match (cu.online, cu.dominant()) {
            (false, _) => "url(#offline)".to_string(),
            (true, Some(d)) => PALETTE[d % PALETTE.len()].to_string(),
            (true, None) if cu.other > 0.0 => OTHER.to_string(),
            (true, None) => "#ffffff".to_string(),
        };
        let depth = (0.15 + 0.85 * cu.used() / cu.usable()).min(1.0);
        let _ = write!(
            o,
            "<rect class=\"cpu\" x=\"{x}\" y=\"{y}\" width=\"{0:.1}\" height=\"{0:.1}\" \
             fill=\"{fill}\" fill-opacity=\"{depth:.2}\"><title>CPU {c}: {1}</title></rect>",
            cell - 1.0,
            esc(&cu.describe(&names))
        );
        if cell >= 30.0 {
            let _ = write!(
                o,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"cell\" text-anchor=\"middle\" \
                 pointer-events=\"none\">{}</text>",
                x + cell / 2.0,
                y + cell / 2.0 + 4.0,
                cu.used()
            );
        }
    }
    let _ = writeln!(
        o,
        "<text x=\"{left}\" y=\"{}\" class=\"axis\">CPU index within the row: 0 to {}</text>\
         </svg></section>",
        h - 4.0,
        cols - 1
    );
}

/// Stacked bars of every CPU's 256 vectors by owner (one bar per node, mean per CPU, on big
/// machines).
fn bars(o: &mut String, r: &Value) {
    let (names, per_cpu) = cpu_use(r);
    if per_cpu.is_empty() {
        return;
    }
    let group = if per_cpu.len() > BARS_PER_CPU_UP_TO {
        NODE
    } else {
        1
    };
    let groups: Vec<&[CpuUse]> = per_cpu.chunks(group).collect();
    let (top, plot_h, left) = (10.0, 220.0, 40.0);
    let bar_w = ((WIDTH - left) / groups.len() as f64).min(24.0);
    let h = top + plot_h + 40.0;
    let _ = write!(
        o,
        "<section id=\"bars\"><h2>Vectors by owner</h2><p>{}</p>",
        if group == 1 {
            "Each bar is one CPU's 256 vectors, from the bottom: system vectors, then each \
             device's, platform irqs, old vectors of moves, unused managed reservations; the \
             rest is free."
                .to_string()
        } else {
            format!(
                "Each bar is one node of {NODE} CPUs: the mean use per CPU of the node's 256 \
                 vectors, stacked as for a single CPU (system at the bottom; the rest is free)."
            )
        }
    );
    let _ = write!(
        o,
        "<svg class=\"chart\" width=\"{WIDTH}\" height=\"{h}\" viewBox=\"0 0 {WIDTH} {h}\" \
         role=\"img\" aria-label=\"vectors by owner\">{PATTERNS}"
    );
    for tick in [0u32, 64, 128, 192, 256] {
        let y = top + plot_h - f64::from(tick) / 256.0 * plot_h;
        let _ = write!(
            o,
            "<line x1=\"{left}\" x2=\"{WIDTH}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/>\
             <text x=\"0\" y=\"{:.1}\" class=\"axis\">{tick}</text>",
            y + 4.0
        );
    }
    for (g, cpus) in groups.iter().enumerate() {
        let n = cpus.len() as f64;
        let mean = |f: &dyn Fn(&CpuUse) -> f64| cpus.iter().map(f).sum::<f64>() / n;
        let x = left + g as f64 * bar_w;
        let mut y = top + plot_h;
        let what = label(g, group, cpus.len());
        let bw = (bar_w - 1.0).max(0.5);
        // A segment of `value` vectors on top of the bar, hatched when `hatched`.
        let mut seg = |o: &mut String, value: f64, fill: &str, name: &str, hatched: bool| {
            if value > 0.0 {
                let hh = value / 256.0 * plot_h;
                y -= hh;
                let _ = write!(
                    o,
                    "<rect x=\"{x:.1}\" y=\"{y:.2}\" width=\"{bw:.1}\" height=\"{hh:.2}\" \
                     fill=\"{fill}\"><title>{}: {} {value:.1}</title></rect>",
                    esc(&what),
                    esc(name)
                );
                if hatched {
                    let _ = write!(
                        o,
                        "<rect x=\"{x:.1}\" y=\"{y:.2}\" width=\"{bw:.1}\" height=\"{hh:.2}\" \
                         fill=\"url(#hatch)\" pointer-events=\"none\"/>"
                    );
                }
            }
        };
        seg(o, mean(&|c| c.system), SYSTEM, "system", false);
        for (d, name) in names.iter().enumerate() {
            let colour = PALETTE[d % PALETTE.len()];
            seg(o, mean(&|c| c.devices[d].0), colour, name, false);
            let managed = format!("{name} managed");
            seg(o, mean(&|c| c.devices[d].1), colour, &managed, true);
        }
        seg(o, mean(&|c| c.other), OTHER, "platform irqs", false);
        let moving = mean(&|c| c.moving);
        seg(o, moving, "url(#moving)", "old vectors of moves", false);
        let unused = mean(&|c| c.managed_unused);
        seg(
            o,
            unused,
            "url(#unused)",
            "managed reservations unused",
            false,
        );
        if cpus.iter().all(|c| !c.online) {
            let _ = write!(
                o,
                "<rect x=\"{x:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{plot_h}\" \
                 fill=\"url(#offline)\" fill-opacity=\"0.6\"><title>{} offline</title></rect>",
                (bar_w - 1.0).max(0.5),
                esc(&label(g, group, cpus.len()))
            );
        }
    }
    let every = (groups.len() / 16).max(1);
    for g in (0..groups.len()).step_by(every) {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\">{}</text>",
            left + g as f64 * bar_w,
            top + plot_h + 14.0,
            if group == 1 {
                format!("{g}")
            } else {
                format!("n{g}")
            }
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"{left}\" y=\"{:.1}\" class=\"axis\">{}</text></svg></section>",
        h - 6.0,
        if group == 1 { "CPU" } else { "node" }
    );
}

fn label(g: usize, group: usize, len: usize) -> String {
    if group == 1 {
        format!("CPU {g}")
    } else {
        format!(
            "node {g} (CPUs {}-{}, mean per CPU)",
            g * group,
            g * group + len - 1
        )
    }
}

/// Kinds of events and their marker colours.
fn event_colour(kind: &str) -> &'static str {
    match kind {
        "affinity" => "#4e79a7",
        "cpu-offline" => "#e15759",
        "cpu-online" => "#59a14f",
        "spurious" | "wrong-rid" => "#f28e2b",
        "storm" => "#b07aa1",
        "guest-unmask" | "guest-mask" => "#76b7b2",
        "queues" => "#9c755f",
        _ => "#333333",
    }
}

fn timeline(o: &mut String, r: &Value) {
    let t = &r["timeline"];
    let bucket = u(t, "bucket_steps").max(1);
    let series = [
        ("raised", "#4e79a7", ""),
        ("delivered", "#59a14f", "6 3"),
        ("blocked", "#e15759", ""),
        ("lost", "#000000", ""),
        ("faults", "#f28e2b", "2 2"),
    ];
    let data: Vec<Vec<f64>> = series.iter().map(|s| nums(t, s.0)).collect();
    let buckets = data[0].len().max(1);
    let peak = data.iter().flatten().copied().fold(1.0, f64::max);
    let (left, top, plot_h) = (50.0, 10.0, 200.0);
    let plot_w = WIDTH - left - 10.0;
    let steps = (buckets as u64 * bucket).max(1) as f64;
    let x = |step: f64| left + step / steps * plot_w;
    let y = |v: f64| top + plot_h - v / peak * plot_h;
    let h = top + plot_h + 40.0;
    let _ = write!(
        o,
        "<section id=\"timeline\"><h2>Timeline</h2><p>Interrupts per {bucket} steps; the \
         events are marked (hover a marker for what it did).</p><p class=\"legend\">"
    );
    for (name, colour, _) in series {
        let _ = write!(
            o,
            "<span><i style=\"background:{colour}\"></i>{name}</span>"
        );
    }
    o.push_str("</p>");
    let _ = write!(
        o,
        "<svg class=\"chart\" width=\"{WIDTH}\" height=\"{h}\" viewBox=\"0 0 {WIDTH} {h}\" \
         role=\"img\" aria-label=\"timeline\">"
    );
    for k in 0..=4 {
        let v = peak * f64::from(k) / 4.0;
        let _ = write!(
            o,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"grid\"/>\
             <text x=\"0\" y=\"{:.1}\" class=\"axis\">{v:.0}</text>",
            left + plot_w,
            y(v),
            y(v),
            y(v) + 4.0
        );
    }
    for ((name, colour, dash), values) in series.iter().zip(&data) {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x((i as f64 + 0.5) * bucket as f64), y(*v)))
            .collect();
        let _ = write!(
            o,
            "<polyline class=\"series\" data-series=\"{name}\" fill=\"none\" stroke=\"{colour}\" \
             stroke-width=\"1.5\" stroke-dasharray=\"{dash}\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    for m in arr(r, "marks") {
        let step = m["step"].as_f64().unwrap_or(0.0);
        let kind = s(m, "kind");
        let _ = write!(
            o,
            "<g class=\"mark\"><line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{1:.1}\" \
             stroke=\"{2}\" stroke-width=\"1.5\"/><circle cx=\"{0:.1}\" cy=\"{top}\" r=\"4\" \
             fill=\"{2}\"/><title>step {3}: {4}: {5}</title></g>",
            x(step),
            top + plot_h,
            event_colour(kind),
            step,
            esc(kind),
            esc(s(m, "text"))
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"{left}\" y=\"{:.1}\" class=\"axis\">step 0</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">step {steps}</text>\
         </svg></section>",
        top + plot_h + 16.0,
        left + plot_w,
        top + plot_h + 16.0
    );
}

fn devices(o: &mut String, r: &Value) {
    let _ = write!(
        o,
        "<section id=\"devices\"><h2>Devices ({} irqs allocated)</h2>\
         <table class=\"sortable\"><thead><tr><th>name</th><th>kind</th><th>store</th>\
         <th>rid</th><th>vectors</th><th>capacity</th><th>raised</th><th>delivered</th></tr>\
         </thead><tbody>",
        span(r, "/irqs")
    );
    for (i, d) in arr(r, "devices").iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let _ = write!(
            o,
            "<tr><td data-k=\"/devices/{i}/name\"><i class=\"swatch\" style=\"background:{colour}\"></i>{}</td>",
            esc(s(d, "name"))
        );
        for key in [
            "kind",
            "store",
            "requester_id",
            "vectors",
            "capacity",
            "raised",
            "delivered",
        ] {
            o.push_str(&td(r, &format!("/devices/{i}/{key}")));
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table></section>\n");
}

/// A row's per-CPU counts from the report's JSON.
fn per_cpu(row: &Value) -> Vec<(u32, u64)> {
    arr(row, "per_cpu")
        .iter()
        .map(|p| {
            (
                p[0].as_u64().unwrap_or(0) as u32,
                p[1].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn busiest(o: &mut String, r: &Value) {
    let rows = arr(r, "busiest");
    if rows.is_empty() {
        return;
    }
    let counts: Vec<Vec<(u32, u64)>> = rows.iter().map(per_cpu).collect();
    let cols = busiest_columns(&counts, BUSIEST_CPU_COLUMNS);
    let other = busiest_other(&counts, &cols);
    o.push_str(
        "<section id=\"busiest\"><h2>Busiest irqs</h2><p>Interrupts handled per CPU, \
         as /proc/interrupts shows them; the columns are the CPUs these irqs ran on.</p>\
         <div class=\"wide\"><table class=\"sortable\"><thead><tr><th>IRQ</th>",
    );
    for c in &cols {
        let _ = write!(o, "<th>CPU{c}</th>");
    }
    if other.is_some() {
        o.push_str("<th>other CPUs</th>");
    }
    o.push_str("<th>total</th><th>store</th><th>device</th></tr></thead><tbody>");
    for (i, pc) in counts.iter().enumerate() {
        let _ = write!(o, "<tr>{}", td(r, &format!("/busiest/{i}/irq")));
        for c in &cols {
            match pc.iter().position(|x| x.0 == *c) {
                Some(k) => o.push_str(&td(r, &format!("/busiest/{i}/per_cpu/{k}/1"))),
                None => o.push_str("<td class=\"n\">0</td>"),
            }
        }
        if let Some(other) = &other {
            let _ = write!(o, "<td class=\"n\">{}</td>", other[i]);
        }
        let _ = write!(
            o,
            "{}{}<td><span data-k=\"/busiest/{i}/device\">{}</span>[<span data-k=\"/busiest/{i}/index\">{}</span>]</td></tr>",
            td(r, &format!("/busiest/{i}/total")),
            td(r, &format!("/busiest/{i}/store")),
            esc(s(&rows[i], "device")),
            u(&rows[i], "index")
        );
    }
    o.push_str("</tbody></table></div></section>\n");
}

/// Every device's allocations, as data for the sortable, paged tables the script draws.
fn allocations(o: &mut String, r: &Value) {
    let devs = arr(r, "allocations");
    o.push_str(
        "<section id=\"allocations\"><h2>Allocations</h2><p>Every allocated index of every \
         device at the end of the run. Click a column to sort.</p>",
    );
    for (i, d) in devs.iter().enumerate() {
        let rows = arr(d, "rows");
        let _ = write!(
            o,
            "<details{}><summary><i class=\"swatch\" style=\"background:{}\"></i>{} \
             ({} indices)</summary><div class=\"alloc\" data-device=\"{i}\"></div></details>",
            if i == 0 { " open" } else { "" },
            PALETTE[i % PALETTE.len()],
            esc(s(d, "device")),
            rows.len()
        );
    }
    // Compact rows: [index, irq, cpu, vector, irte, state]; `<` escaped so the data cannot end
    // the script element.
    let data: Vec<Value> = devs
        .iter()
        .map(|d| {
            Value::Array(
                arr(d, "rows")
                    .iter()
                    .map(|row| {
                        serde_json::json!([
                            row["index"],
                            row["irq"],
                            row["cpu"],
                            row["vector"],
                            row["irte"],
                            row["state"]
                        ])
                    })
                    .collect(),
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "<script type=\"application/json\" id=\"alloc-data\">{}</script></section>",
        Value::Array(data).to_string().replace('<', "\\u003c")
    );
}

fn events(o: &mut String, r: &Value) {
    let lines = arr(r, "events");
    if lines.is_empty() {
        return;
    }
    o.push_str("<section id=\"events\"><h2>Events</h2><ul>");
    for i in 0..lines.len() {
        let _ = write!(o, "<li>{}</li>", span(r, &format!("/events/{i}")));
    }
    o.push_str("</ul></section>\n");
}

/// One small bar chart per metric: a bar per strategy, with its value.
fn metric_bars(o: &mut String, title: &str, bars: &[(&str, f64, String)], tag: &str) {
    let peak = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-12);
    let (w, row) = (300.0, 22.0);
    let h = bars.len() as f64 * row + 6.0;
    let _ = write!(
        o,
        "<figure class=\"metric\"><figcaption>{} <em class=\"{tag}\">{tag}</em></figcaption>\
         <svg width=\"{}\" height=\"{h}\" viewBox=\"0 0 {} {h}\">",
        esc(title),
        w + 180.0,
        w + 180.0
    );
    for (k, (name, v, cell)) in bars.iter().enumerate() {
        let y = k as f64 * row + 3.0;
        let bw = (v / peak * w).max(if *v > 0.0 { 1.0 } else { 0.0 });
        let _ = write!(
            o,
            "<text x=\"0\" y=\"{:.1}\" class=\"axis\">{}</text><rect x=\"80\" y=\"{y:.1}\" \
             width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" \
             class=\"value\">{cell}</text>",
            y + 14.0,
            esc(name),
            row - 6.0,
            PALETTE[k % PALETTE.len()],
            84.0 + bw,
            y + 14.0
        );
    }
    o.push_str("</svg></figure>");
}

fn vmm(o: &mut String, r: &Value, kvm: Option<&Value>) {
    let v = &r["vmm"];
    if v.is_object() {
        let _ = write!(
            o,
            "<section id=\"vmm\"><h2>VMM: guest MSI-X entries unmasked one by one</h2>\
             <p>A guest unmasks {} MSI-X entries of a passed-through NIC one by one while the \
             enabled ones fire: host vectors on demand (genmsi-vmm) and the old \
             disable/re-enable strategy, on the same workload. <strong>Modelled:</strong> \
             <span data-k=\"/vmm/model\">{}</span></p>",
            span(r, "/vmm/vectors"),
            esc(s(v, "model"))
        );
        o.push_str(
            "<table><thead><tr><th></th><th>on-demand</th><th>baseline</th><th></th></tr>\
             </thead><tbody>",
        );
        let metrics = [
            ("ops", "host vector operations", "counted"),
            ("touched_per_unmask", "host vectors per unmask", "counted"),
            ("raised", "interrupts raised", "modelled"),
            ("lost", "interrupts lost", "modelled"),
        ];
        for (key, name, tag) in metrics {
            let _ = write!(
                o,
                "<tr><th>{name}</th>{}{}<td><em class=\"{tag}\">{tag}</em></td></tr>",
                td(r, &format!("/vmm/on_demand/{key}")),
                td(r, &format!("/vmm/baseline/{key}")),
            );
        }
        o.push_str("</tbody></table><div class=\"metrics\">");
        for (key, name, tag) in metrics {
            let bars: Vec<(&str, f64, String)> =
                [("on-demand", "on_demand"), ("baseline", "baseline")]
                    .iter()
                    .map(|(label, k)| {
                        let value = &v[*k][key];
                        (*label, value.as_f64().unwrap_or(0.0), shown(value))
                    })
                    .collect();
            metric_bars(o, name, &bars, tag);
        }
        o.push_str(
            "</div><p class=\"note\">counted: operations the in-process host performed on the \
             real genmsi crates; modelled: depends on the model's device firing rate, not \
             measured on a hypervisor.</p>",
        );
    } else {
        o.push_str("<section id=\"vmm\"><h2>VMM</h2><p>This run has no VMM comparison (only the default scenario runs it).</p>");
    }
    match kvm {
        Some(k) => kvm_section(o, k),
        None => o.push_str(
            "<p>No measured KVM figures on this page: pass a saved `genmsi bench kvm-grow \
             --json` with `--kvm FILE` to add them.</p>",
        ),
    }
    o.push_str("</section>\n");
}

fn kvm_section(o: &mut String, k: &Value) {
    let on_kvm = k["kvm"].as_bool().unwrap_or(false);
    let _ = write!(
        o,
        "<h3 id=\"kvm\">Measured on KVM: {} entries, a real guest counting arrivals</h3>",
        k["vectors"].as_u64().unwrap_or(0)
    );
    if !on_kvm {
        o.push_str("<p class=\"bad\">That run had no usable /dev/kvm: nothing was measured.</p>");
        return;
    }
    let strategies = [
        ("on-demand", "on_demand"),
        ("eager", "eager"),
        ("baseline", "baseline"),
    ];
    let metrics = [
        (
            "unmasked_max",
            "entries the guest had unmasked, at most",
            Unit::Count,
        ),
        ("routes_max", "GSI routes held, at most", Unit::Count),
        ("routes_end", "GSI routes held at the end", Unit::Count),
        ("routing_calls", "KVM_SET_GSI_ROUTING calls", Unit::Count),
        (
            "routing_seconds",
            "time in KVM_SET_GSI_ROUTING",
            Unit::Seconds,
        ),
        (
            "host_seconds",
            "host time (routes, irqfds, vectors)",
            Unit::Seconds,
        ),
        ("host_us_per_unmask", "host time per unmask", Unit::Micros),
        ("fired", "interrupts the device fired", Unit::Count),
        ("counted", "interrupts the guest counted", Unit::Count),
        ("lost", "lost (fired - counted, by the guest)", Unit::Count),
        (
            "dropped_while_disabled",
            "of those, fired while MSI-X was disabled",
            Unit::Count,
        ),
    ];
    o.push_str("<table><thead><tr><th></th>");
    for (label, _) in strategies {
        let _ = write!(o, "<th>{label}</th>");
    }
    o.push_str("<th></th></tr></thead><tbody>");
    for (key, name, unit) in metrics {
        let _ = write!(o, "<tr><th>{name}</th>");
        for (_, s) in strategies {
            let v = &k[s][key];
            let _ = write!(
                o,
                "<td class=\"n\" data-kvm=\"/{s}/{key}\">{}</td>",
                esc(&unit.show(v))
            );
        }
        o.push_str("<td><em class=\"measured\">measured</em></td></tr>");
    }
    o.push_str("</tbody></table><div class=\"metrics\">");
    for (key, name, unit) in metrics {
        let bars: Vec<(&str, f64, String)> = strategies
            .iter()
            .map(|(label, s)| {
                let v = &k[*s][key];
                (*label, v.as_f64().unwrap_or(0.0), unit.show(v))
            })
            .collect();
        metric_bars(o, name, &bars, "measured");
    }
    o.push_str("</div>");
}

/// The unit of a measured figure, and how it is shown: three significant digits, times in
/// the largest unit that keeps them at 1 or more (1.33 ms, not 1333.4114 microseconds).
#[derive(Clone, Copy)]
enum Unit {
    Count,
    Seconds,
    Micros,
}

impl Unit {
    fn show(self, v: &Value) -> String {
        let Some(x) = v.as_f64() else {
            return shown(v);
        };
        let seconds = match self {
            Unit::Count => return shown(v),
            Unit::Seconds => x,
            Unit::Micros => x * 1e-6,
        };
        // Rounded to three significant digits first, so that 999.7 µs shows as 1.00 ms.
        let seconds = if seconds == 0.0 || !seconds.is_finite() {
            seconds
        } else {
            let scale = 10f64.powi(2 - seconds.abs().log10().floor() as i32);
            (seconds * scale).round() / scale
        };
        let (scaled, unit) = match seconds.abs() {
            s if s >= 1.0 || s == 0.0 => (seconds, "s"),
            s if s >= 1e-3 => (seconds * 1e3, "ms"),
            s if s >= 1e-6 => (seconds * 1e6, "\u{b5}s"),
            _ => (seconds * 1e9, "ns"),
        };
        let decimals = match scaled.abs() {
            a if a >= 100.0 => 0,
            a if a >= 10.0 => 1,
            _ => 2,
        };
        format!("{scaled:.decimals$} {unit}")
    }
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1000px;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}table.sortable th,table.alloc th{cursor:pointer;user-select:none}\
th.asc::after{content:' \\25B2'}th.desc::after{content:' \\25BC'}\
.ok{color:#1a7f37}.bad{color:#c00}.note{color:#555;font-size:.9em}\
.legend span{margin-right:1em;white-space:nowrap}.legend i,.swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border:1px solid #999}\
.legend i.moving{background:radial-gradient(#c00 30%,#fff 35%);background-size:4px 4px}\
.legend i.unused{background:repeating-linear-gradient(45deg,#999 0 1.5px,#eee 1.5px 4px)}\
.legend i.managed{background:repeating-linear-gradient(45deg,#888 0 2px,#ccc 2px 4px)!important}\
.legend i.offline{background:repeating-linear-gradient(45deg,#999 0 1px,#fff 1px 4px)}\
svg.chart{display:block;margin:.5em 0}.axis{font-size:11px;fill:#555}.cell{font-size:11px;fill:#111}.value{font-size:11px;fill:#222}\
.grid{stroke:#e5e5e5}rect.cpu:hover{stroke:#000}.metrics{display:flex;flex-wrap:wrap;gap:8px}\
figure.metric{margin:0}figcaption{font-size:12px}em.modelled{color:#b35900}em.measured{color:#1a7f37}em.counted{color:#555}\
.pager button{margin:0 4px}.wide{overflow-x:auto}";

/// Sorting of the server-rendered tables, and the paged, sortable allocation tables drawn from
/// the embedded data. Errors are recorded on the root element for the browser check.
const JS: &str = r#"
"use strict";
window.addEventListener("error", function (e) {
  var n = +(document.documentElement.dataset.errors || 0);
  document.documentElement.dataset.errors = n + 1;
});
function cellValue(t) {
  var x = t.trim();
  if (x === "-" || x === "") return -Infinity;
  var n = Number(x);
  return isNaN(n) ? x : n;
}
function compare(a, b) {
  if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
  return typeof a === "number" ? -1 : 1;
}
function sortHeader(th, apply) {
  var desc = th.classList.contains("asc");
  Array.prototype.forEach.call(th.parentNode.children, function (h) { h.classList.remove("asc", "desc"); });
  th.classList.add(desc ? "desc" : "asc");
  apply(th.cellIndex, desc ? -1 : 1);
}
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th) {
    th.addEventListener("click", function () {
      sortHeader(th, function (col, dir) {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          return dir * compare(cellValue(a.cells[col].textContent), cellValue(b.cells[col].textContent));
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
});
var PAGE = 100;
var COLUMNS = ["index", "irq", "CPU", "vector", "IRTE", "state"];
var allocData = JSON.parse(document.getElementById("alloc-data").textContent);
document.querySelectorAll("div.alloc").forEach(function (div) {
  var rows = allocData[+div.dataset.device] || [];
  var page = 0;
  var table = document.createElement("table");
  table.className = "alloc";
  var head = table.createTHead().insertRow();
  var body = table.createTBody();
  var pager = document.createElement("div");
  pager.className = "pager";
  function draw() {
    body.textContent = "";
    rows.slice(page * PAGE, page * PAGE + PAGE).forEach(function (r) {
      var tr = body.insertRow();
      r.forEach(function (v, i) {
        var td = tr.insertCell();
        td.textContent = v === null ? "-" : i === 3 ? "0x" + v.toString(16) : i === 4 ? "0x" + v.toString(16) : v;
        if (i < 5) td.className = "n";
      });
    });
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    pager.textContent = "";
    var prev = document.createElement("button");
    prev.textContent = "previous";
    prev.disabled = page === 0;
    prev.onclick = function () { page--; draw(); };
    var next = document.createElement("button");
    next.textContent = "next";
    next.disabled = page + 1 >= pages;
    next.onclick = function () { page++; draw(); };
    pager.appendChild(prev);
    pager.appendChild(document.createTextNode("page " + (page + 1) + " of " + pages + " (" + rows.length + " indices)"));
    pager.appendChild(next);
  }
  COLUMNS.forEach(function (name) {
    var th = document.createElement("th");
    th.textContent = name;
    th.addEventListener("click", function () {
      sortHeader(th, function (col, dir) {
        rows.sort(function (a, b) {
          var x = a[col] === null ? -Infinity : a[col];
          var y = b[col] === null ? -Infinity : b[col];
          return dir * compare(x, y);
        });
        page = 0;
        draw();
      });
    });
    head.appendChild(th);
  });
  div.appendChild(table);
  div.appendChild(pager);
  draw();
});
window.addEventListener("load", function () {
  document.documentElement.dataset.loadMs = Math.round(performance.now());
});
"#;
