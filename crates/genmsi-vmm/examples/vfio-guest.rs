//! Runs inside a Linux guest (scripts/vfio boots it): drives `VirtMsix<VfioMsix>` on every
//! function bound to vfio-pci with the trapped accesses a guest would make, checks the host
//! kernel's `/proc/interrupts` after each step, and measures each strategy.
//!
//! `vfio-guest [--json FILE]`: prints `[PASS]`/`[FAIL]` lines, one `[RESULT]` JSON line per
//! strategy and function, and `N passed, N failed`; exits 1 on any failure.

use genmsi_pci::msix::Region as BarRegion;
use genmsi_pci::Bar;
use genmsi_vmm::vfio::{BarAccess, Growth, VfioDevice, VfioMsix};
use genmsi_vmm::{Error, MsiBackend, MsixLayout, Strategy, VfioError, VirtMsix};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// e1000e registers (Intel 82574 datasheet 10.2): interrupt cause read/set, mask set/clear,
/// and the vector allocation of the "other" cause.
const ICR: u64 = 0xC0;
const ICS: u64 = 0xC8;
const IMS: u64 = 0xD0;
const IMC: u64 = 0xD8;
const IVAR: u64 = 0xE4;
const ICR_LSC: u32 = 1 << 2;
const ICR_OTHER: u32 = 1 << 24;
/// A fire not seen on any eventfd of its entry within this long is lost (TCG on a loaded
/// machine delivers in milliseconds; this is two orders above).
const FIRE_WAIT: Duration = Duration::from_millis(500);
/// Rounds of the unmask sequence on the firing e1000e (each ends with a guest disable):
/// every round grows the baseline's block 4 times.
const FIRE_ROUNDS: u32 = 8;

#[derive(Default)]
struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, ok: bool, what: &str) {
        match ok {
            true => {
                self.passed += 1;
                println!("[PASS] {what}");
            }
            false => {
                self.failed += 1;
                println!("[FAIL] {what}");
            }
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Measure {
    kernel: String,
    device: String,
    function: String,
    vectors: u32,
    strategy: String,
    refused: Option<String>,
    host_irqs_max: u32,
    host_irqs_end: u32,
    /// `VFIO_DEVICE_SET_IRQS` calls from enable to the last unmask (first round).
    set_irqs_grow: u64,
    /// All of them, to the unplug.
    set_irqs_calls: u64,
    set_irqs_disables: u64,
    rounds: u32,
    unmasks: u64,
    host_us_enable: f64,
    host_us_per_unmask: f64,
    fires: u64,
    fires_lost: u64,
    eventfd_counts: u64,
}

/// The `vfio-msix[i]` host interrupts of `function` in /proc/interrupts.
fn host_irqs(function: &str) -> BTreeSet<u32> {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    let tag = format!("]({function})");
    text.lines()
        .filter(|l| l.contains(&tag))
        .filter_map(|l| {
            let at = l.find("vfio-msix[")? + "vfio-msix[".len();
            let end = l[at..].find(']')?;
            l[at..at + end].parse().ok()
        })
        .collect()
}

/// The host function's MSI-X Enable, from its configuration space in sysfs.
fn host_msix_enabled(function: &str, cap: u64) -> bool {
    let config =
        std::fs::read(format!("/sys/bus/pci/devices/{function}/config")).unwrap_or_default();
    config
        .get(cap as usize + 3)
        .is_some_and(|control_hi| control_hi & 0x80 != 0)
}

/// What the device is, by vendor and device id.
fn device_kind(dev: &VfioDevice) -> &'static str {
    let mut id = [0u8; 4];
    if dev.config_read(0, &mut id).is_err() {
        return "unknown";
    }
    match (
        u16::from_le_bytes([id[0], id[1]]),
        u16::from_le_bytes([id[2], id[3]]),
    ) {
        (0x8086, 0x10d3) => "e1000e",
        (0x1b36, 0x0010) => "nvme",
        (0x1af4, 0x1000) | (0x1af4, 0x1041) => "virtio-net",
        _ => "unknown",
    }
}

/// The e1000e firing from user space through BAR0 (see the module docs of the harness).
struct Nic {
    device: Option<BarAccess>,
}

fn reg_write(dev: &BarAccess, reg: u64, value: u32) {
    let _ = dev.write(0, reg, &value.to_le_bytes());
}

/// The e1000e raises vector `index` once (its "other" cause, link status change).
fn fire(dev: &BarAccess, index: u32) {
    reg_write(dev, ICR, !0);
    reg_write(dev, IVAR, (0x8 | index) << 16);
    reg_write(dev, IMS, ICR_LSC | ICR_OTHER);
    reg_write(dev, ICS, ICR_LSC);
}

/// Masked entry `index` of the e1000e holds nothing: QEMU's interrupt throttling re-sends a
/// vector after a notify, so what it held is delivered (unmasked, read, masked again) until
/// it stays quiet.
fn quiet(msix: &mut VirtMsix<VfioMsix>, tbar: Bar, ctrl: u64, index: u32) {
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(20));
        if !msix.backend().pending(index) {
            return;
        }
        let _ = msix.mmio_write(tbar, ctrl, &0u32.to_le_bytes());
        let _ = msix.backend().take(index);
        let _ = msix.mmio_write(tbar, ctrl, &1u32.to_le_bytes());
    }
}

/// Eventfds a firing thread may read: entry -> every eventfd it had during the run (a
/// released one keeps what it counted).
type Sinks = Arc<Mutex<Vec<Vec<Arc<EventFd>>>>>;

fn publish(sinks: &Sinks, backend: &VfioMsix, vectors: u32) {
    let mut s = sinks.lock().unwrap();
    for i in 0..vectors {
        if let Some(e) = backend.eventfd(i) {
            let list = &mut s[i as usize];
            if !list.iter().any(|x| Arc::ptr_eq(x, &e)) {
                list.push(e);
            }
        }
    }
}

fn drain(sinks: &Sinks, index: u32) -> u64 {
    let list: Vec<Arc<EventFd>> = sinks.lock().unwrap()[index as usize].clone();
    list.iter().map(|e| e.read().unwrap_or(0)).sum()
}

struct FireStats {
    fires: AtomicU64,
    lost: AtomicU64,
    counted: AtomicU64,
}

/// Fires live entries round robin until `stop`, each once and waited for.
fn fire_loop(
    nic: &Nic,
    sinks: &Sinks,
    live: &Mutex<BTreeSet<u32>>,
    stop: &AtomicBool,
    stats: &FireStats,
    gate: &RwLock<()>,
) {
    let mut next = 0u32;
    while !stop.load(Ordering::Acquire) {
        // The guest's own disable between rounds is no loss: no fire spans it.
        let _open = gate.read().unwrap();
        let entries: Vec<u32> = live.lock().unwrap().iter().copied().collect();
        let Some(&index) = entries.iter().find(|&&i| i >= next).or(entries.first()) else {
            drop(_open);
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        next = index + 1;
        drain(sinks, index);
        if let Some(dev) = &nic.device {
            fire(dev, index);
        }
        stats.fires.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let mut got = 0;
        while got == 0 && start.elapsed() < FIRE_WAIT {
            got = drain(sinks, index);
            if got == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        stats.counted.fetch_add(got, Ordering::Relaxed);
        if got == 0 {
            stats.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::OnDemand => "on-demand",
        Strategy::Eager => "eager",
        Strategy::Baseline => "baseline",
        Strategy::Queues => "queues",
    }
}

/// One strategy on one function: the guest's sequence, checked and measured.
fn run(function: &str, strategy: Strategy, kernel: &str, checks: &mut Checks) -> Option<Measure> {
    let dev = match VfioDevice::open(function) {
        Ok(d) => d,
        Err(e) => {
            checks.check(false, &format!("{function}: open: {e}"));
            return None;
        }
    };
    let kind = device_kind(&dev);
    let cap = dev.msix();
    let vectors = cap.vectors;
    let tag = format!("{kernel} {kind} {function} {}", strategy_name(strategy));
    let mut m = Measure {
        kernel: kernel.into(),
        device: kind.into(),
        function: function.into(),
        vectors,
        strategy: strategy_name(strategy).into(),
        ..Measure::default()
    };
    let growth = match strategy {
        Strategy::OnDemand => Growth::Dynamic,
        _ => Growth::Reenable,
    };
    let dynamic = dev.dynamic_msix();
    let fires = kind == "e1000e";
    let bars = match fires {
        true => dev.bar_access().ok(),
        false => None,
    };
    if let Some(b) = &bars {
        let _ = dev.enable_bus_master();
        reg_write(b, IMC, !0);
    }
    let backend = match VfioMsix::new(dev, growth, vectors) {
        Ok(b) => b,
        Err(e) => {
            checks.check(
                !dynamic && matches!(e, Error::Vfio(VfioError::NoResize { .. })),
                &format!("{tag}: refused with the typed error on a NORESIZE kernel: {e}"),
            );
            m.refused = Some(e.to_string());
            return Some(m);
        }
    };
    checks.check(
        dynamic || growth == Growth::Reenable,
        &format!("{tag}: opened"),
    );
    let table = BarRegion::parse(cap.table.1 as u32 | u32::from(cap.table.0)).ok()?;
    let pba = BarRegion::parse(cap.pba.1 as u32 | u32::from(cap.pba.0)).ok()?;
    let layout = MsixLayout::new(vectors, table, pba, 0).ok()?;
    let tbar = Bar::new(cap.table.0);
    let pbar = Bar::new(cap.pba.0);
    let mut msix = VirtMsix::new(layout, backend, strategy);
    let w32 = |msix: &mut VirtMsix<VfioMsix>, bar: Bar, off: u64, v: u32| {
        msix.mmio_write(bar, off, &v.to_le_bytes())
    };
    // The guest programs every entry (masked, as at reset) and enables MSI-X.
    for i in 0..vectors {
        let at = cap.table.1 + u64::from(i) * 16;
        let ok = w32(&mut msix, tbar, at, 0xFEE0_0000).is_ok()
            && w32(&mut msix, tbar, at + 8, 0x30 + i).is_ok();
        if !ok {
            checks.check(false, &format!("{tag}: program entry {i}"));
        }
    }
    let begin = Instant::now();
    let enable = msix.config_write(3, &[0x80]);
    m.host_us_enable = begin.elapsed().as_secs_f64() * 1e6;
    checks.check(
        enable.is_ok(),
        &format!("{tag}: guest enables MSI-X ({enable:?})"),
    );
    let expect = |msix: &VirtMsix<VfioMsix>| -> BTreeSet<u32> {
        (0..vectors)
            .filter(|&i| msix.backend().is_backed(i))
            .collect()
    };

    // The e1000e fires live entries all along (a thread; a fire seen on no eventfd is lost).
    let sinks: Sinks = Arc::new(Mutex::new(vec![Vec::new(); vectors as usize]));
    let live = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(FireStats {
        fires: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        counted: AtomicU64::new(0),
    });
    let nic = Arc::new(Nic { device: bars });
    let gate = Arc::new(RwLock::new(()));
    let firer = fires.then(|| {
        let (nic, sinks, live, stop, stats, gate) = (
            nic.clone(),
            sinks.clone(),
            live.clone(),
            stop.clone(),
            stats.clone(),
            gate.clone(),
        );
        std::thread::spawn(move || fire_loop(&nic, &sinks, &live, &stop, &stats, &gate))
    });

    // Unmask entries one by one (in rounds on the e1000e, a guest disable between them).
    let mut exact = true;
    let mut enabled_throughout = true;
    let mut unmask_disables = 0;
    m.rounds = if fires { FIRE_ROUNDS } else { 1 };
    for round in 0..m.rounds {
        if round > 0 {
            let _closed = gate.write().unwrap();
            live.lock().unwrap().clear();
            for i in 0..vectors {
                let _ = w32(&mut msix, tbar, cap.table.1 + u64::from(i) * 16 + 12, 1);
            }
            let off = msix
                .config_write(3, &[0x00])
                .and_then(|()| msix.config_write(3, &[0x80]));
            if let Err(e) = off {
                checks.check(
                    false,
                    &format!("{tag}: round {round}: guest disable and enable: {e}"),
                );
            }
        }
        let disables = msix.backend().device().stats().disables;
        for i in 0..vectors {
            let at = cap.table.1 + u64::from(i) * 16 + 12;
            let r = w32(&mut msix, tbar, at, 0);
            if let Err(e) = r {
                checks.check(false, &format!("{tag}: unmask {i}: {e}"));
                break;
            }
            if fires {
                publish(&sinks, msix.backend(), vectors);
                live.lock().unwrap().insert(i);
            }
            let seen = host_irqs(function);
            m.host_irqs_max = m.host_irqs_max.max(seen.len() as u32);
            let want = expect(&msix);
            if seen != want {
                exact = false;
                println!("  {tag}: after unmask {i}: /proc/interrupts {seen:?}, backed {want:?}");
            }
            if !host_msix_enabled(function, cap.offset) {
                enabled_throughout = false;
            }
            if fires {
                // Let the firing thread go through the live entries.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        unmask_disables += msix.backend().device().stats().disables - disables;
        if round == 0 {
            m.set_irqs_grow = msix.backend().device().stats().calls;
        }
    }
    let on_demand = strategy == Strategy::OnDemand;
    checks.check(
        exact,
        &format!("{tag}: after each unmask /proc/interrupts lists exactly the backed vfio-msix[i]"),
    );
    if on_demand {
        checks.check(
            enabled_throughout && unmask_disables == 0,
            &format!("{tag}: host MSI-X stayed enabled throughout the unmasks ({unmask_disables} disables)"),
        );
        let want: BTreeSet<u32> = (0..vectors).collect();
        checks.check(
            expect(&msix) == want,
            &format!("{tag}: exactly the unmasked entries are backed"),
        );
    }
    stop.store(true, Ordering::Release);
    if let Some(t) = firer {
        let _ = t.join();
    }
    m.fires = stats.fires.load(Ordering::Relaxed);
    m.fires_lost = stats.lost.load(Ordering::Relaxed);
    m.eventfd_counts = stats.counted.load(Ordering::Relaxed);
    if fires {
        checks.check(
            m.fires > 0,
            &format!("{tag}: the e1000e fired {} times", m.fires),
        );
        // On demand must lose nothing; the others' losses are measured (reported).
        if strategy == Strategy::OnDemand {
            checks.check(
                m.fires_lost == 0,
                &format!("{tag}: {} of {} fires lost", m.fires_lost, m.fires),
            );
        }
    }

    // Mask, pending, Function Mask: on the e1000e, a masked entry's interrupt is held and
    // delivered once at unmask.
    if fires {
        let dev = nic.device.as_ref()?;
        let entry = vectors - 1;
        let ctrl = cap.table.1 + u64::from(entry) * 16 + 12;
        if strategy != Strategy::Baseline {
            // An entry without a host vector latches in the device's own PBA (the host
            // kernel keeps it masked) and is delivered once it is backed.
            let _ = w32(&mut msix, tbar, ctrl, 1);
            quiet(&mut msix, tbar, ctrl, entry);
            let released = msix.shrink();
            fire(dev, entry);
            std::thread::sleep(Duration::from_millis(50));
            let mut pbits = [0u8; 8];
            let _ = msix.mmio_read(pbar, cap.pba.1, &mut pbits);
            let latched =
                !msix.backend().is_backed(entry) && u64::from_le_bytes(pbits) >> entry & 1 == 1;
            let _ = w32(&mut msix, tbar, ctrl, 0);
            let mut got = 0;
            let start = Instant::now();
            while got == 0 && start.elapsed() < FIRE_WAIT {
                got = msix.backend().take(entry).unwrap_or(0);
            }
            checks.check(
                released == Ok(1) && latched && got >= 1,
                &format!("{tag}: unbacked entry {entry} latched in the device PBA (guest sees it), delivered once backed (released {released:?}, latched {latched}, delivered {got})"),
            );
        }
        let _ = msix.backend().take(entry);
        let _ = w32(&mut msix, tbar, ctrl, 1);
        fire(dev, entry);
        std::thread::sleep(Duration::from_millis(50));
        let mut pbits = [0u8; 8];
        let _ = msix.mmio_read(pbar, cap.pba.1, &mut pbits);
        let held = u64::from_le_bytes(pbits) >> entry & 1 == 1;
        checks.check(
            held && msix.backend().take(entry).ok() == Some(0),
            &format!("{tag}: masked entry {entry} holds its interrupt (guest PBA bit set)"),
        );
        let _ = w32(&mut msix, tbar, ctrl, 0);
        let got = msix.backend().take(entry).unwrap_or(0);
        checks.check(
            got >= 1,
            &format!("{tag}: unmask delivers what entry {entry} held ({got})"),
        );
        // Function Mask.
        let _ = msix.config_write(3, &[0xC0]);
        fire(dev, 0);
        std::thread::sleep(Duration::from_millis(50));
        let held = msix.backend().pending(0);
        let _ = msix.config_write(3, &[0x80]);
        let got = msix.backend().take(0).unwrap_or(0);
        checks.check(
            held && got >= 1,
            &format!(
                "{tag}: Function Mask holds entry 0's interrupt, clearing it delivers ({got})"
            ),
        );
    }

    // Mask the upper half and shrink.
    for i in vectors / 2..vectors {
        let _ = w32(&mut msix, tbar, cap.table.1 + u64::from(i) * 16 + 12, 1);
    }
    let holding: BTreeSet<u32> = (0..vectors)
        .filter(|&i| msix.backend().pending(i))
        .collect();
    let shrunk = msix.shrink();
    let seen = host_irqs(function);
    checks.check(
        shrunk.is_ok() && seen == expect(&msix),
        &format!(
            "{tag}: shrink released {shrunk:?}; /proc/interrupts lists the {} backed",
            seen.len()
        ),
    );
    if on_demand {
        let want: BTreeSet<u32> = (0..vectors / 2).chain(holding.iter().copied()).collect();
        checks.check(
            seen == want,
            &format!("{tag}: after shrink exactly the live half and the masked entries holding an interrupt ({holding:?}) are held"),
        );
    }
    m.host_irqs_end = seen.len() as u32;
    let work = msix.unmask_work();
    m.unmasks = work.unmasks;
    m.host_us_per_unmask = match work.unmasks {
        0 => 0.0,
        n => work.host.as_secs_f64() * 1e6 / n as f64,
    };
    let stats = msix.backend().device().stats();
    m.set_irqs_calls = stats.calls;
    m.set_irqs_disables = stats.disables;
    let unplugged = msix.unplug();
    let seen = host_irqs(function);
    checks.check(
        unplugged.is_ok() && seen.is_empty(),
        &format!("{tag}: unplug leaves no vfio-msix line ({seen:?})"),
    );
    if let Ok(b) = unplugged {
        m.set_irqs_calls = b.device().stats().calls;
        m.set_irqs_disables = b.device().stats().disables;
    }
    Some(m)
}

fn main() {
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--json" {
            json = args.next();
        }
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut functions: Vec<String> = std::fs::read_dir("/sys/bus/pci/drivers/vfio-pci")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(':'))
                .collect()
        })
        .unwrap_or_default();
    functions.sort();
    let mut checks = Checks::default();
    checks.check(
        !functions.is_empty(),
        &format!("functions bound to vfio-pci: {functions:?}"),
    );
    let mut results = Vec::new();
    for f in &functions {
        for s in [Strategy::OnDemand, Strategy::Eager, Strategy::Baseline] {
            if let Some(m) = run(f, s, &kernel, &mut checks) {
                println!("[RESULT] {}", serde_json::to_string(&m).unwrap_or_default());
                results.push(m);
            }
        }
    }
    if let Some(path) = json {
        let _ = std::fs::write(
            path,
            serde_json::to_string_pretty(&results).unwrap_or_default(),
        );
    }
    println!("{} passed, {} failed", checks.passed, checks.failed);
    std::process::exit(i32::from(checks.failed > 0));
}
