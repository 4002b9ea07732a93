//! `genmsi host`: the interrupt layout of the Linux machine this runs on (or of a captured
//! copy of its files), read from what the kernel exports, without root where the files allow.
//!
//! 1. CPUs online and possible, NUMA nodes (`/sys/devices/system/{cpu,node}`).
//! 2. Every irq of `/sys/kernel/irq/N/` (chip, hwirq, actions, per-CPU counts) with its
//!    requested and effective affinity (`/proc/irq/N/`), and the system lines of
//!    `/proc/interrupts` (LOC, NMI, ...).
//! 3. Every PCI function of `/sys/bus/pci/devices/` (class, ids, driver, `msi_irqs/`) with its
//!    MSI and MSI-X capabilities, walked in the function's `config` by `genmsi-pci`'s
//!    capability walk (an unprivileged read sees the first 64 bytes only: said so).
//! 4. The vector domain's per-CPU table from debugfs (`/sys/kernel/debug/irq/domains/VECTOR`,
//!    Linux's `irq_matrix_debug_show`: available, managed, managed allocated, allocated) when
//!    it is mounted and readable; otherwise per-CPU use is **estimated** from the effective
//!    affinities and labelled so.
//!
//! Every file that could not be read is listed with the reason. Paths are read under a root
//! directory (`/` for the live machine), so a capture of the same files is read the same way.

use genmsi_pci::cap::{self, CapId};
use genmsi_pci::{ByteConfig, ConfigSpace};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Vectors of one local APIC (SDM Vol. 3A 11.5).
pub const VECTORS_PER_CPU: u32 = 256;
/// Vectors Linux x86 can hand to devices when the VECTOR table cannot be read: 0x20
/// (`FIRST_EXTERNAL_VECTOR`) up to 0xEC (`LOCAL_TIMER_VECTOR`, the first system vector),
/// less the syscall vector 0x80 and the cascade vector of ISA irq 2, which the matrix
/// reserves on every CPU. An estimate: kernels with posted MSI start system vectors at 0xEB.
pub const LINUX_ALLOCATABLE_ESTIMATE: u32 = 0xEC - 0x20 - 2;

/// One irq as the kernel exports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostIrq {
    /// Irq number.
    pub irq: u32,
    /// Its irq chip (`IO-APIC`, `PCI-MSIX-0000:00:04.0`, `IR-PCI-MSIX-...`).
    pub chip: String,
    /// Hardware irq number in its domain (pin, MSI index).
    pub hwirq: Option<u64>,
    /// The handlers' names (`actions`).
    pub actions: String,
    /// The PCI function it belongs to (from `msi_irqs/` or the chip name).
    pub device: Option<String>,
    /// `msi`, `msix`, `ioapic` or `other`.
    pub kind: String,
    /// Interrupts handled per CPU.
    pub per_cpu_count: Vec<u64>,
    /// Requested affinity (`smp_affinity_list`).
    pub affinity: Option<Vec<u32>>,
    /// Effective affinity (`effective_affinity_list`): the CPU whose vector it holds.
    pub effective: Option<Vec<u32>>,
}

/// One PCI function.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostDevice {
    /// Domain:bus:device.function.
    pub address: String,
    /// Class code (`0x010802`: NVMe).
    pub class: u32,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Bound driver.
    pub driver: Option<String>,
    /// Irqs allocated to its MSI / MSI-X (`msi_irqs/`).
    pub msi_irqs: Vec<u32>,
    /// MSI or MSI-X (`msi_irqs/N`'s content), when it has any.
    pub msi_mode: Option<String>,
    /// MSI-X Table Size + 1, from the capability.
    pub msix_table: Option<u32>,
    /// MSI vectors the function can request (Multiple Message Capable).
    pub msi_capable: Option<u32>,
    /// Bytes of configuration space readable (64 without root).
    pub config_bytes: usize,
}

/// One CPU's row of the vector domain's table (debugfs `VECTOR`, or estimated).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuVectors {
    /// CPU number.
    pub cpu: u32,
    /// Online.
    pub online: bool,
    /// Vectors still available for allocation (`avl`).
    pub available: u32,
    /// Managed reservations (`man`).
    pub managed: u32,
    /// Managed vectors allocated (`mac`).
    pub managed_allocated: u32,
    /// Vectors allocated (`act`).
    pub allocated: u32,
}

/// What `genmsi host` read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// Where it was read: `this machine` or the capture's directory.
    pub source: String,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Possible CPUs.
    pub cpus_possible: u32,
    /// Online CPUs.
    pub online: Vec<u32>,
    /// NUMA nodes and their CPUs.
    pub nodes: BTreeMap<u32, Vec<u32>>,
    /// Interrupt remapping in use (irq chips named `IR-...`).
    pub remapping: bool,
    /// Every irq.
    pub irqs: Vec<HostIrq>,
    /// `/proc/interrupts`' named lines: name, per-CPU counts, description.
    pub system: Vec<(String, Vec<u64>, String)>,
    /// Every PCI function.
    pub devices: Vec<HostDevice>,
    /// Per-CPU vectors, index = CPU.
    pub vectors: Vec<CpuVectors>,
    /// `debugfs VECTOR` (read) or `estimated` (from the effective affinities).
    pub vectors_from: String,
    /// System vectors per CPU, from the VECTOR table's `System:` line when read.
    pub system_vectors: Option<u32>,
    /// What could not be read, and why.
    pub unreadable: Vec<(String, String)>,
}

struct Reader {
    root: PathBuf,
    unreadable: Vec<(String, String)>,
}

impl Reader {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    fn shown(rel: &str) -> String {
        format!("/{}", rel.trim_start_matches('/'))
    }

    /// A file's text; a failure is listed (unless `quiet`) and gives `None`.
    fn text(&mut self, rel: &str, quiet: bool) -> Option<String> {
        match std::fs::read_to_string(self.path(rel)) {
            Ok(t) => Some(t),
            Err(e) => {
                if !quiet {
                    self.unreadable.push((Self::shown(rel), e.to_string()));
                }
                None
            }
        }
    }

    fn bytes(&mut self, rel: &str) -> Option<Vec<u8>> {
        match std::fs::read(self.path(rel)) {
            Ok(b) => Some(b),
            Err(e) => {
                self.unreadable.push((Self::shown(rel), e.to_string()));
                None
            }
        }
    }

    /// The entries of a directory, sorted; a failure is listed.
    fn dir(&mut self, rel: &str, quiet: bool) -> Vec<String> {
        match std::fs::read_dir(self.path(rel)) {
            Ok(d) => {
                let mut v: Vec<String> = d
                    .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect();
                v.sort();
                v
            }
            Err(e) => {
                if !quiet {
                    self.unreadable.push((Self::shown(rel), e.to_string()));
                }
                Vec::new()
            }
        }
    }

    fn link_name(&self, rel: &str) -> Option<String> {
        let target = std::fs::read_link(self.path(rel)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }
}

/// Parses a Linux cpulist ("0-3,8,10-11"); `None` on anything else.
pub fn cpulist(s: &str) -> Option<Vec<u32>> {
    let s = s.trim();
    let mut out = Vec::new();
    if s.is_empty() {
        return Some(out);
    }
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > genmsi::MAX_CPUS {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().ok()?),
        }
    }
    Some(out)
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// A capability figure: the number, `-` where the whole space was read and it is absent, `?`
/// where it could not be seen.
fn cap_shown(d: &HostDevice, v: Option<u32>) -> String {
    match v {
        Some(n) => n.to_string(),
        None if d.config_bytes > 64 => "-".into(),
        None => "?".into(),
    }
}

/// Reads the machine under `root` (`/` for this machine).
pub fn read(root: &Path) -> HostReport {
    let mut r = Reader {
        root: root.to_path_buf(),
        unreadable: Vec::new(),
    };
    let mut h = HostReport {
        source: if root == Path::new("/") {
            "this machine".into()
        } else {
            root.display().to_string()
        },
        ..HostReport::default()
    };
    h.kernel = r
        .text("proc/sys/kernel/osrelease", false)
        .map(|t| t.trim().to_string());
    let possible = r
        .text("sys/devices/system/cpu/possible", false)
        .and_then(|t| cpulist(&t))
        .unwrap_or_default();
    h.online = r
        .text("sys/devices/system/cpu/online", false)
        .and_then(|t| cpulist(&t))
        .unwrap_or_default();
    h.cpus_possible = possible.iter().chain(&h.online).max().map_or(0, |&m| m + 1);
    for node in r.dir("sys/devices/system/node", true) {
        if let Some(n) = node
            .strip_prefix("node")
            .and_then(|n| n.parse::<u32>().ok())
        {
            if let Some(cpus) = r
                .text(&format!("sys/devices/system/node/{node}/cpulist"), false)
                .and_then(|t| cpulist(&t))
            {
                h.nodes.insert(n, cpus);
            }
        }
    }
    read_devices(&mut r, &mut h);
    read_irqs(&mut r, &mut h);
    read_proc_interrupts(&mut r, &mut h);
    read_vectors(&mut r, &mut h);
    h.unreadable = r.unreadable;
    h
}

fn read_devices(r: &mut Reader, h: &mut HostReport) {
    for addr in r.dir("sys/bus/pci/devices", false) {
        let base = format!("sys/bus/pci/devices/{addr}");
        let num = |r: &mut Reader, f: &str| {
            r.text(&format!("{base}/{f}"), false)
                .and_then(|t| hex(&t))
                .unwrap_or(0)
        };
        let mut d = HostDevice {
            address: addr.clone(),
            class: num(r, "class") as u32,
            vendor: num(r, "vendor") as u16,
            device: num(r, "device") as u16,
            driver: r.link_name(&format!("{base}/driver")),
            ..HostDevice::default()
        };
        for irq in r.dir(&format!("{base}/msi_irqs"), true) {
            if let Ok(n) = irq.parse() {
                d.msi_irqs.push(n);
                if d.msi_mode.is_none() {
                    d.msi_mode = r
                        .text(&format!("{base}/msi_irqs/{irq}"), false)
                        .map(|t| t.trim().to_string());
                }
            }
        }
        d.msi_irqs.sort_unstable();
        if let Some(config) = r.bytes(&format!("{base}/config")) {
            d.config_bytes = config.len();
            let (msix, msi) = capabilities(config);
            d.msix_table = msix;
            d.msi_capable = msi;
        }
        h.devices.push(d);
    }
}

/// MSI-X table size and MSI vectors from a configuration space image, through
/// `genmsi-pci`'s capability walk (PCIe 7.7.1.2, 7.7.2.2). A short image (64 bytes without
/// root) ends the walk early: what it cannot see is `None`.
fn capabilities(mut config: Vec<u8>) -> (Option<u32>, Option<u32>) {
    let len = config.len().clamp(64, 4096);
    config.resize(if len > 256 { 4096 } else { 256 }, 0);
    if len <= 64 {
        // Only the header is visible: the capability pointer leads past what was read.
        return (None, None);
    }
    let cfg = ByteConfig::new(config);
    let control = |at: Option<u16>| at.and_then(|a| cfg.read_u16(a + 2).ok());
    let msix =
        control(cap::find(&cfg, CapId::MsiX).ok().flatten()).map(|c| u32::from(c & 0x7FF) + 1);
    let msi =
        control(cap::find(&cfg, CapId::Msi).ok().flatten()).map(|c| 1 << ((c >> 1) & 0x7).min(5));
    (msix, msi)
}

fn read_irqs(r: &mut Reader, h: &mut HostReport) {
    let owner: BTreeMap<u32, String> = h
        .devices
        .iter()
        .flat_map(|d| d.msi_irqs.iter().map(|&i| (i, d.address.clone())))
        .collect();
    let modes: BTreeMap<String, String> = h
        .devices
        .iter()
        .filter_map(|d| Some((d.address.clone(), d.msi_mode.clone()?)))
        .collect();
    let mut numbers: Vec<u32> = r
        .dir("sys/kernel/irq", false)
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    numbers.sort_unstable();
    for irq in numbers {
        let base = format!("sys/kernel/irq/{irq}");
        let field = |r: &mut Reader, f: &str| {
            r.text(&format!("{base}/{f}"), false)
                .map(|t| t.trim().to_string())
                .unwrap_or_default()
        };
        let chip = field(r, "chip_name");
        let device = owner.get(&irq).cloned().or_else(|| {
            chip.rsplit_once('-')
                .map(|(_, a)| a.to_string())
                .filter(|a| a.matches(':').count() == 2)
        });
        let kind = match device.as_ref().and_then(|d| modes.get(d)) {
            Some(m) => m.clone(),
            None if chip.contains("MSIX") => "msix".into(),
            None if chip.contains("MSI") => "msi".into(),
            None if chip.contains("IO-APIC") => "ioapic".into(),
            None => "other".into(),
        };
        if chip.starts_with("IR-") {
            h.remapping = true;
        }
        let list = |r: &mut Reader, f: &str| {
            r.text(&format!("proc/irq/{irq}/{f}"), true)
                .and_then(|t| cpulist(&t))
        };
        h.irqs.push(HostIrq {
            irq,
            hwirq: field(r, "hwirq").parse().ok(),
            actions: field(r, "actions"),
            per_cpu_count: field(r, "per_cpu_count")
                .split(',')
                .filter_map(|c| c.parse().ok())
                .collect(),
            affinity: list(r, "smp_affinity_list"),
            effective: list(r, "effective_affinity_list"),
            chip,
            device,
            kind,
        });
    }
}

fn read_proc_interrupts(r: &mut Reader, h: &mut HostReport) {
    let Some(text) = r.text("proc/interrupts", false) else {
        return;
    };
    let mut lines = text.lines();
    let columns: Vec<u32> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|c| c.strip_prefix("CPU")?.parse().ok())
        .collect();
    for line in lines {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.parse::<u32>().is_ok() {
            continue; // numbered irqs come from /sys/kernel/irq
        }
        let mut counts = Vec::new();
        let mut words = rest.split_whitespace().peekable();
        while counts.len() < columns.len() {
            match words.peek().and_then(|w| w.parse::<u64>().ok()) {
                Some(c) => {
                    counts.push(c);
                    words.next();
                }
                None => break,
            }
        }
        let description = words.collect::<Vec<_>>().join(" ");
        h.system.push((name.to_string(), counts, description));
    }
}

fn read_vectors(r: &mut Reader, h: &mut HostReport) {
    let cpus = h.cpus_possible as usize;
    let online = |c: usize| h.online.contains(&(c as u32));
    if let Some(text) = r.text("sys/kernel/debug/irq/domains/VECTOR", false) {
        let (rows, system) = parse_vector_table(&text);
        if !rows.is_empty() {
            h.vectors = (0..cpus)
                .map(|c| {
                    rows.get(&(c as u32)).cloned().unwrap_or(CpuVectors {
                        cpu: c as u32,
                        ..CpuVectors::default()
                    })
                })
                .map(|mut v| {
                    v.online = online(v.cpu as usize);
                    v
                })
                .collect();
            h.system_vectors = system;
            h.vectors_from = "debugfs VECTOR".into();
            return;
        }
        r.unreadable.push((
            "/sys/kernel/debug/irq/domains/VECTOR".into(),
            "no per-CPU table in it".into(),
        ));
    }
    // Estimated: one vector per irq on its effective CPU.
    let mut used = vec![0u32; cpus];
    for irq in &h.irqs {
        if let Some(&cpu) = irq.effective.as_ref().and_then(|e| e.first()) {
            if let Some(u) = used.get_mut(cpu as usize) {
                *u += 1;
            }
        }
    }
    h.vectors = used
        .iter()
        .enumerate()
        .map(|(c, &u)| CpuVectors {
            cpu: c as u32,
            online: online(c),
            available: LINUX_ALLOCATABLE_ESTIMATE.saturating_sub(u),
            allocated: u,
            ..CpuVectors::default()
        })
        .collect();
    h.vectors_from = "estimated".into();
}

/// Parses `irq_matrix_debug_show`'s output: the `System: N: ...` line and the
/// `| CPU | avl | man | mac | act | vectors` rows.
pub fn parse_vector_table(text: &str) -> (BTreeMap<u32, CpuVectors>, Option<u32>) {
    let mut rows = BTreeMap::new();
    let mut system = None;
    let mut in_table = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("System:") {
            system = rest.split(':').next().and_then(|n| n.trim().parse().ok());
        } else if t.starts_with("| CPU") {
            in_table = true;
        } else if in_table {
            let f: Vec<u32> = t
                .split_whitespace()
                .take(5)
                .map_while(|w| w.parse().ok())
                .collect();
            if let [cpu, available, managed, managed_allocated, allocated] = f[..] {
                rows.insert(
                    cpu,
                    CpuVectors {
                        cpu,
                        online: true,
                        available,
                        managed,
                        managed_allocated,
                        allocated,
                    },
                );
            } else {
                in_table = false;
            }
        }
    }
    (rows, system)
}

impl HostReport {
    /// Vectors a CPU can hand out in all (allocated + available).
    fn usable(&self, v: &CpuVectors) -> u32 {
        v.allocated + v.available + v.managed.saturating_sub(v.managed_allocated)
    }

    /// The text report.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "host: {} (kernel {})",
            self.source,
            self.kernel.as_deref().unwrap_or("unknown")
        );
        let _ = writeln!(
            o,
            "cpus: {} online of {} possible, {} NUMA node(s); interrupt remapping: {}",
            self.online.len(),
            self.cpus_possible,
            self.nodes.len().max(1),
            if self.remapping { "on" } else { "off" }
        );
        let _ = writeln!(
            o,
            "irqs: {} ({} MSI-X, {} MSI, {} IO-APIC, {} other)",
            self.irqs.len(),
            self.irqs.iter().filter(|i| i.kind == "msix").count(),
            self.irqs.iter().filter(|i| i.kind == "msi").count(),
            self.irqs.iter().filter(|i| i.kind == "ioapic").count(),
            self.irqs.iter().filter(|i| i.kind == "other").count(),
        );
        let estimated = self.vectors_from == "estimated";
        let _ = writeln!(
            o,
            "\nvectors per CPU ({}):",
            if estimated {
                "estimated: one per irq on its effective CPU, usable taken as Linux x86's 202; \
                 the debugfs VECTOR table was not readable"
            } else {
                "read from the kernel's debugfs VECTOR table"
            }
        );
        let _ = writeln!(o, "  cpu  online  allocated  managed  available  headroom");
        for v in &self.vectors {
            let usable = self.usable(v).max(1);
            let _ = writeln!(
                o,
                "  {:>3}  {:>6}  {:>9}  {:>7}  {:>9}  {:>7.1}%",
                v.cpu,
                if v.online { "yes" } else { "no" },
                v.allocated,
                v.managed,
                v.available,
                100.0 * f64::from(v.available) / f64::from(usable)
            );
        }
        if let Some(min) = self
            .vectors
            .iter()
            .filter(|v| v.online)
            .min_by_key(|v| v.available)
        {
            let _ = writeln!(
                o,
                "  least headroom: CPU {} with {} vectors available{}",
                min.cpu,
                min.available,
                if estimated { " (estimated)" } else { "" }
            );
        }
        let _ = writeln!(o, "\nPCI functions with MSI or MSI-X:");
        let _ = writeln!(
            o,
            "  address       class   vendor:device  driver        mode  irqs  MSI-X table  MSI"
        );
        for d in self
            .devices
            .iter()
            .filter(|d| !d.msi_irqs.is_empty() || d.msix_table.is_some() || d.msi_capable.is_some())
        {
            let _ = writeln!(
                o,
                "  {:<12}  {:06x}  {:04x}:{:04x}      {:<12}  {:<4}  {:>4}  {:>11}  {:>3}",
                d.address,
                d.class,
                d.vendor,
                d.device,
                d.driver.as_deref().unwrap_or("-"),
                d.msi_mode.as_deref().unwrap_or("-"),
                d.msi_irqs.len(),
                cap_shown(d, d.msix_table),
                cap_shown(d, d.msi_capable),
            );
        }
        let short: Vec<&HostDevice> = self
            .devices
            .iter()
            .filter(|d| d.config_bytes > 0 && d.config_bytes <= 64)
            .collect();
        if !short.is_empty() {
            let _ = writeln!(
                o,
                "  ({} function(s) show only 64 bytes of configuration space without root: their \
                 capabilities are '?')",
                short.len()
            );
        }
        if self.unreadable.is_empty() {
            let _ = writeln!(o, "\neverything was readable");
        } else {
            let _ = writeln!(o, "\nnot readable ({}):", self.unreadable.len());
            for (path, why) in self.unreadable.iter().take(20) {
                let _ = writeln!(o, "  {path}: {why}");
            }
            if self.unreadable.len() > 20 {
                let _ = writeln!(o, "  ... and {} more", self.unreadable.len() - 20);
            }
        }
        o
    }

    /// The vector map the HTML report draws (`genmsi_sim`'s `VectorMap` layout): per CPU,
    /// system + free + devices + other = 256.
    pub fn vector_map(&self) -> serde_json::Value {
        let cpus = self.vectors.len();
        let mut devices: BTreeMap<String, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
        let mut other = vec![0u32; cpus];
        for irq in &self.irqs {
            let Some(&cpu) = irq.effective.as_ref().and_then(|e| e.first()) else {
                continue;
            };
            let cpu = cpu as usize;
            if cpu >= cpus {
                continue;
            }
            match &irq.device {
                Some(d) => {
                    devices
                        .entry(d.clone())
                        .or_insert_with(|| (vec![0; cpus], vec![0; cpus]))
                        .0[cpu] += 1
                }
                None => other[cpu] += 1,
            }
        }
        let mut system = Vec::with_capacity(cpus);
        let mut free = Vec::with_capacity(cpus);
        for (c, v) in self.vectors.iter().enumerate() {
            let held: u32 = devices.values().map(|d| d.0[c]).sum::<u32>() + other[c];
            // What the kernel allocated beyond the irqs seen is counted as platform.
            other[c] += v.allocated.saturating_sub(held);
            let used = held.max(v.allocated);
            free.push(v.available);
            system.push(VECTORS_PER_CPU.saturating_sub(used + v.available));
        }
        serde_json::json!({
            "cpus": cpus,
            "online": self.vectors.iter().map(|v| v.online).collect::<Vec<_>>(),
            "system": system,
            "free": free,
            "managed_unused": vec![0; cpus],
            "moving": vec![0; cpus],
            "other": other,
            "devices": devices.into_iter().map(|(d, (v, m))| serde_json::json!({"device": d, "vectors": v, "managed": m})).collect::<Vec<_>>(),
            "reserved": 0,
        })
    }

    /// A scenario `genmsi run` replays: the machine's CPUs, interrupt remapping, and each
    /// function with MSI or MSI-X as a simulated device with as many vectors.
    pub fn scenario(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# Replay of {} (kernel {}), written by `genmsi host --scenario`.\n\
             # Each PCI function with MSI or MSI-X becomes a simulated device with the vectors it\n\
             # holds; NVMe controllers are managed and spread, as Linux's nvme driver asks.\n\
             seed = 1\n\n[machine]\ncpus = {}\nremapping = {}\nsteps = 4000\n",
            self.source,
            self.kernel.as_deref().unwrap_or("unknown"),
            self.cpus_possible.max(1),
            self.remapping
        );
        for d in &self.devices {
            let irqs = d.msi_irqs.len() as u32;
            if irqs == 0 {
                continue;
            }
            let kind = match (d.msi_mode.as_deref(), d.class >> 8) {
                (Some("msix"), 0x0108) => "nvme",
                (Some("msix"), _) => "nic",
                _ => "legacy-msi",
            };
            let vectors = if kind == "legacy-msi" { 1 } else { irqs };
            let capacity = d.msix_table.unwrap_or(irqs).max(vectors);
            let _ = writeln!(
                o,
                "[[device]]\nkind = \"{kind}\"\nname = \"{}\"\nvectors = {vectors}\n{}",
                d.address.replace(':', "_"),
                if kind == "legacy-msi" {
                    String::new()
                } else {
                    format!("capacity = {capacity}\n")
                }
            );
        }
        o
    }
}
