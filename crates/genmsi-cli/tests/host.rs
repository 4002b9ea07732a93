//! `genmsi host` and `genmsi plan` on real kernels: the machine running the tests, and the
//! files captured from Debian's kernel under QEMU by `scripts/capture-host`
//! (`tests/fixtures/host-*`). Each figure is checked against the kernel's own
//! `/proc/interrupts` and `/proc/irq/N/` files, read here independently of the CLI.

mod common;

use common::{genmsi, genmsi_json, replays};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("host-")
        })
        .collect();
    v.sort();
    assert!(
        v.len() >= 2,
        "the 8- and 24-CPU captures are in the repository"
    );
    v
}

/// `/proc/interrupts`' numbered lines: irq -> counts per CPU column.
fn proc_interrupts(text: &str) -> BTreeMap<u64, Vec<u64>> {
    let mut lines = text.lines();
    let columns = lines.next().unwrap().split_whitespace().count();
    lines
        .filter_map(|l| {
            let (n, rest) = l.split_once(':')?;
            let irq = n.trim().parse().ok()?;
            let counts = rest
                .split_whitespace()
                .take(columns)
                .map(|c| c.parse().unwrap())
                .collect();
            Some((irq, counts))
        })
        .collect()
}

/// Every irq of `proc` is in `ours` with as many CPUs and no count below `proc`'s (read
/// later); returns how many are equal.
fn counts_not_below(proc: &BTreeMap<u64, Vec<u64>>, ours: &BTreeMap<u64, Vec<u64>>) -> usize {
    let mut same = 0;
    for (irq, counts) in proc {
        let got = ours.get(irq).unwrap_or_else(|| panic!("irq {irq} missing"));
        assert_eq!(got.len(), counts.len(), "irq {irq}");
        assert!(
            got.iter().zip(counts).all(|(g, c)| g >= c),
            "irq {irq}: {got:?} < {counts:?}"
        );
        same += usize::from(got == counts);
    }
    same
}

/// The CPU holding each irq's vector, from `/proc/irq/N/effective_affinity_list`.
fn effective_cpus(root: &Path) -> BTreeMap<u64, u64> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(root.join("proc/irq")).unwrap() {
        let e = e.unwrap();
        let Ok(irq) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let Ok(list) = std::fs::read_to_string(e.path().join("effective_affinity_list")) else {
            continue;
        };
        let first = list.trim().split([',', '-']).next().unwrap_or("");
        if let Ok(cpu) = first.parse() {
            m.insert(irq, cpu);
        }
    }
    m
}

fn irq_counts(report: &Value) -> BTreeMap<u64, Vec<u64>> {
    report["irqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let counts = i["per_cpu_count"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .collect();
            (i["irq"].as_u64().unwrap(), counts)
        })
        .collect()
}

/// Per CPU, the irqs whose vector it holds.
fn allocated_per_cpu(effective: &BTreeMap<u64, u64>, cpus: usize) -> Vec<u64> {
    let mut v = vec![0; cpus];
    for &cpu in effective.values() {
        v[cpu as usize] += 1;
    }
    v
}

fn check_vectors(report: &Value, root: &Path) {
    let cpus = report["cpus_possible"].as_u64().unwrap() as usize;
    let want = allocated_per_cpu(&effective_cpus(root), cpus);
    let got: Vec<u64> = report["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["allocated"].as_u64().unwrap())
        .collect();
    assert_eq!(got, want, "{}: vectors per CPU", root.display());
    for v in report["vectors"].as_array().unwrap() {
        let (allocated, available) = (
            v["allocated"].as_u64().unwrap(),
            v["available"].as_u64().unwrap(),
        );
        assert_eq!(
            allocated + available,
            202,
            "estimated usable vectors per CPU"
        );
    }
}

#[test]
fn host_reads_the_captured_kernels_exactly() {
    for dir in fixtures() {
        let d = dir.to_str().unwrap();
        let report = genmsi_json(&["host", "--root", d, "--json"]);
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let cpus: usize = name
            .trim_end_matches("cpu")
            .rsplit('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            report["cpus_possible"].as_u64(),
            Some(cpus as u64),
            "{name}"
        );
        assert_eq!(report["online"].as_array().unwrap().len(), cpus, "{name}");
        assert_eq!(
            report["kernel"].as_str().map(|k| k.starts_with("6.12.")),
            Some(true),
            "{name}"
        );
        assert_eq!(report["remapping"], true, "{name}: IR-PCI-MSIX chips");
        // Every irq /proc/interrupts lists is there, on the same CPUs, counted no less (the
        // capture read /proc/interrupts first: a live irq may have ticked since).
        let proc = proc_interrupts(&std::fs::read_to_string(dir.join("proc/interrupts")).unwrap());
        let same = counts_not_below(&proc, &irq_counts(&report));
        assert!(
            same * 4 >= proc.len() * 3,
            "{name}: {same} of {} irqs equal",
            proc.len()
        );
        check_vectors(&report, &dir);
        // The three functions, with the MSI-X table sizes QEMU gives them and the vectors
        // their drivers took: nvme one per CPU plus its admin queue.
        let devices = report["devices"].as_array().unwrap();
        let by_driver = |drv: &str| {
            devices
                .iter()
                .find(|d| d["driver"] == drv)
                .unwrap_or_else(|| panic!("{name}: no {drv} function"))
        };
        let nvme = by_driver("nvme");
        assert_eq!(nvme["msix_table"], 65, "{name}");
        assert_eq!(
            nvme["msi_irqs"].as_array().unwrap().len(),
            cpus + 1,
            "{name}"
        );
        assert_eq!(by_driver("e1000e")["msix_table"], 5, "{name}");
        assert_eq!(by_driver("virtio-pci")["msix_table"], 33, "{name}");
        // Irq debugfs is not in Debian's kernel: said, and the per-CPU use labelled estimated.
        assert_eq!(report["vectors_from"], "estimated", "{name}");
        assert!(
            report["unreadable"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u[0] == "/sys/kernel/debug/irq/domains/VECTOR"),
            "{name}"
        );
        // The text report says the same.
        let text = String::from_utf8(genmsi(&["host", "--root", d]).stdout).unwrap();
        assert!(
            text.contains(&format!("cpus: {cpus} online of {cpus} possible")),
            "{text}"
        );
        assert!(text.contains("estimated"), "{text}");
    }
}

#[test]
fn host_reads_this_machine() {
    let Ok(before) = std::fs::read_to_string("/proc/interrupts") else {
        eprintln!("skipped: no /proc/interrupts (not Linux)");
        return;
    };
    let proc = proc_interrupts(&before);
    let report = genmsi_json(&["host", "--json"]);
    assert_eq!(report["source"], "this machine");
    // Read after /proc/interrupts: every irq it listed is there, no count below it.
    counts_not_below(&proc, &irq_counts(&report));
    assert_eq!(
        report["online"].as_array().unwrap().len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        "online CPUs"
    );
    check_vectors(&report, Path::new("/"));
    // The replay runs on the simulated machine.
    let dir = std::env::temp_dir().join(format!("genmsi-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("host.toml");
    let page = dir.join("host.html");
    let out = genmsi(&[
        "host",
        "--scenario",
        scenario.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    replays(&scenario);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("Vector use per CPU") && html.contains("estimated"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_captured_hosts_replay_on_the_simulator() {
    let dir = std::env::temp_dir().join(format!("genmsi-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for fixture in fixtures() {
        let scenario = dir.join("replay.toml");
        let out = genmsi(&[
            "host",
            "--root",
            fixture.to_str().unwrap(),
            "--scenario",
            scenario.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0));
        let text = std::fs::read_to_string(&scenario).unwrap();
        assert!(
            text.contains("kind = \"nvme\"") && text.contains("remapping = true"),
            "{text}"
        );
        replays(&scenario);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 257-vector functions (cloud-hypervisor #7079's VFs) on the captured 24-CPU host, guests
/// unmasking 1/8 of their entries: the run's figures against what they must be.
#[test]
fn plan_for_257_vector_functions_on_the_24_cpu_host() {
    let fixture = fixtures()
        .into_iter()
        .find(|f| f.to_string_lossy().ends_with("-24cpu"))
        .expect("the 24-CPU capture");
    let p = genmsi_json(&[
        "plan",
        "--root",
        fixture.to_str().unwrap(),
        "--vectors",
        "257",
        "--unmask",
        "0.125",
        "--json",
    ]);
    let available = p["available_before"].as_u64().unwrap();
    let vm_routes = p["vm_routes"].as_u64().unwrap();
    assert_eq!(vm_routes, 4096 - 40);
    for r in p["results"].as_array().unwrap() {
        let per = r["host_vectors_per_function"].as_array().unwrap();
        assert_eq!(per.len(), 1, "every function holds the same: {r}");
        let per = per[0].as_u64().unwrap();
        let want = if r["strategy"] == "eager" {
            257
        } else {
            257u64.div_ceil(8)
        };
        assert_eq!(per, want, "{r}");
        // Any-CPU allocations run out only when the machine has fewer free vectors than one
        // function needs.
        assert_eq!(r["host_vectors_exhausted"], true, "{r}");
        let fit = r["fit_host_vectors"].as_u64().unwrap();
        assert_eq!(fit, available / per, "{r}");
        assert!(r["free_vectors_end"].as_u64().unwrap() < per, "{r}");
        assert_eq!(
            r["fit_one_vm_routes"].as_u64().unwrap(),
            (vm_routes / per).min(fit),
            "{r}"
        );
    }
}
