//! The VMM harness: a KVM VM with the in-kernel irqchip, one vCPU entered in 64-bit mode at
//! the guest's code, and PCI functions whose configuration and BAR accesses trap to
//! genmsi-vmm's MSI-X emulation over the KVM backend.
//!
//! 1. [`Harness::boot`] opens `/dev/kvm` ([`HarnessError::NoKvm`] when it cannot), creates
//!    the VM, its irqchip and GSI routing table, guest RAM with page tables, GDT and the
//!    guest's code, the functions (function 0 at device 0 is the one the guest drives; more at
//!    devices 1, 2... for the VMM's own use), and starts the vCPU thread.
//! 2. The vCPU thread runs the guest and serves its exits: the configuration ports, BAR
//!    accesses, the guest's doorbells ([`Events`]), its exit and faults.
//! 3. The harness reads the guest's arrival counters in guest RAM ([`Harness::count`]), gives
//!    it commands ([`Harness::command`]) and stops it ([`Harness::stop`]); a watchdog kicks the
//!    vCPU out of KVM_RUN if the guest stops answering.

use crate::function::Function;
use crate::guest::{self, ctrl, layout, port, Command};
use crate::memory::GuestMemory;
use genmsi_vmm::kvm::{GsiRoutes, KvmMsix, SharedRoutes, Triggers};
use genmsi_vmm::Strategy;
use kvm_bindings::{kvm_segment, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// Where BAR0 of function `k` is placed: 0xE000_0000 + k * 16 MiB.
const BAR_BASE: u64 = 0xE000_0000;
const BAR_STRIDE: u64 = 0x100_0000;
/// How long a command may take the guest.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the harness could not run the guest.
#[derive(Debug)]
pub enum HarnessError {
    /// `/dev/kvm` cannot be opened (no such device, or no right to it): the one reason to
    /// skip.
    NoKvm {
        /// What failed.
        what: &'static str,
        /// The error number.
        errno: i32,
    },
    /// `/dev/kvm` opened but lacks what the harness needs (API version, a capability).
    Unsupported {
        /// What is missing.
        what: &'static str,
    },
    /// A KVM or memory call failed.
    Kvm {
        /// The call.
        op: &'static str,
        /// The error number.
        errno: i32,
    },
    /// genmsi-vmm refused to set up a function.
    Vmm(genmsi_vmm::Error),
    /// The guest took an exception (its vector), found no MSI-X function (0x100), or left
    /// KVM_RUN unexpectedly (0x200 + the exit).
    Guest {
        /// What the guest reported.
        fault: u64,
    },
    /// A BAR that cannot be placed: not aligned to its size, or beyond 4 GiB for a 32-bit
    /// BAR.
    Bar {
        /// Its base.
        base: u64,
        /// Its size.
        len: u64,
    },
    /// A thread of the harness panicked.
    Panicked {
        /// Which.
        thread: &'static str,
    },
    /// The guest did not answer in time.
    Timeout {
        /// What was waited for.
        what: &'static str,
    },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::NoKvm { what, errno } => {
                write!(f, "no usable /dev/kvm ({what}, errno {errno})")
            }
            HarnessError::Unsupported { what } => write!(f, "/dev/kvm lacks {what}"),
            HarnessError::Kvm { op, errno } => write!(f, "{op} failed: errno {errno}"),
            HarnessError::Vmm(e) => write!(f, "genmsi-vmm: {e}"),
            HarnessError::Guest { fault } => write!(f, "guest fault {fault:#x}"),
            HarnessError::Bar { base, len } => {
                write!(f, "a BAR of {len:#x} bytes cannot be at {base:#x}")
            }
            HarnessError::Panicked { thread } => write!(f, "{thread} panicked"),
            HarnessError::Timeout { what } => write!(f, "timed out waiting for {what}"),
        }
    }
}

impl std::error::Error for HarnessError {}

impl From<genmsi_vmm::Error> for HarnessError {
    fn from(e: genmsi_vmm::Error) -> Self {
        HarnessError::Vmm(e)
    }
}

fn kvm_err(op: &'static str) -> impl Fn(kvm_ioctls::Error) -> HarnessError {
    move |e| HarnessError::Kvm {
        op,
        errno: e.errno(),
    }
}

/// One PCI function of the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionConfig {
    /// MSI-X entries (1..=2048).
    pub entries: u32,
    /// Routes it may hold.
    pub budget: u32,
    /// When routes follow the guest.
    pub strategy: Strategy,
}

/// What the harness builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HarnessConfig {
    /// The functions; the guest drives the first.
    pub functions: Vec<FunctionConfig>,
    /// Run the guest's grow workload before it serves commands.
    pub grow: bool,
}

/// What the guest signalled through its ports.
#[derive(Debug)]
pub struct Events {
    /// Entries of function 0 the guest announced (the device may fire them).
    pub active: Vec<AtomicBool>,
    /// Entries announced so far.
    pub announced: AtomicU64,
    /// The grow workload is done.
    pub done: AtomicBool,
    /// The guest exited.
    pub exited: AtomicBool,
    /// A fault the guest reported (0: none).
    pub fault: AtomicU64,
    /// Vectors set in the local APIC's IRR when the guest exited.
    pub irr_at_exit: AtomicU64,
    abort: AtomicBool,
}

/// The running VM (see the module docs).
#[derive(Debug)]
pub struct Harness {
    vcpu: Option<JoinHandle<Result<(), HarnessError>>>,
    functions: Vec<Arc<Mutex<Function>>>,
    triggers: Vec<Arc<Triggers>>,
    routes: SharedRoutes,
    events: Arc<Events>,
    vm: Arc<VmFd>,
    mem: Arc<GuestMemory>,
}

extern "C" fn kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Raises this process's open-file limit (`RLIMIT_NOFILE`) to its hard limit: every backed
/// entry holds two eventfds, so thousands of entries need more than the usual soft limit.
/// Returns the limit now in force.
pub fn raise_file_limit() -> Result<u64, HarnessError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(HarnessError::Kvm {
            op: "getrlimit",
            errno: errno(),
        });
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(HarnessError::Kvm {
                op: "setrlimit",
                errno: errno(),
            });
        }
    }
    Ok(limit.rlim_cur)
}

/// Checks that `/dev/kvm` is usable for the harness: opens it ([`HarnessError::NoKvm`] only
/// when that fails for want of the device or of the right to it, not for want of file
/// descriptors), reads the API version (12) and the capabilities used (in-kernel irqchip, GSI
/// routing, irqfd): a KVM that opens but lacks them is [`HarnessError::Unsupported`], a
/// failure, not a reason to skip.
pub fn kvm_usable() -> Result<Kvm, HarnessError> {
    let kvm = Kvm::new().map_err(|e| match e.errno() {
        libc::EMFILE | libc::ENFILE => HarnessError::Kvm {
            op: "open /dev/kvm",
            errno: e.errno(),
        },
        errno => HarnessError::NoKvm {
            what: "open /dev/kvm",
            errno,
        },
    })?;
    if kvm.get_api_version() != 12 {
        return Err(HarnessError::Unsupported {
            what: "KVM API version 12",
        });
    }
    for (cap, what) in [
        (kvm_ioctls::Cap::Irqchip, "KVM_CAP_IRQCHIP"),
        (kvm_ioctls::Cap::IrqRouting, "KVM_CAP_IRQ_ROUTING"),
        (kvm_ioctls::Cap::Irqfd, "KVM_CAP_IRQFD"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(HarnessError::Unsupported { what });
        }
    }
    Ok(kvm)
}

/// Starts a named thread of the harness.
pub fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, HarnessError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| HarnessError::Kvm {
            op: "spawn a thread",
            errno: e.raw_os_error().unwrap_or(0),
        })
}

fn put_u64s(mem: &mut GuestMemory, gpa: u64, values: &[u64]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    mem.write(gpa, &bytes);
}

/// Page tables (identity, 2 MiB pages, 0..4 GiB), GDT and code.
fn load_guest(mem: &mut GuestMemory) {
    const PRESENT_RW: u64 = 0x3;
    const PAGE_2M: u64 = 0x80;
    const CACHE_DISABLE: u64 = 0x10;
    put_u64s(mem, layout::PML4, &[layout::PDPT | PRESENT_RW]);
    let pdpt: Vec<u64> = (0..4)
        .map(|k| (layout::PD + k * 0x1000) | PRESENT_RW)
        .collect();
    put_u64s(mem, layout::PDPT, &pdpt);
    let pd: Vec<u64> = (0..2048u64)
        .map(|j| {
            // The top GiB holds MMIO (BARs, local APIC): uncached.
            let uc = if j >= 1536 { CACHE_DISABLE } else { 0 };
            (j << 21) | PRESENT_RW | PAGE_2M | uc
        })
        .collect();
    put_u64s(mem, layout::PD, &pd);
    // Null; 64-bit code (L, P, DPL 0, execute/read); data (P, read/write, 4 GiB); TSS (busy).
    let tss_low = 0x0000_8B00_0000_0067 | ((layout::TSS & 0xFF_FFFF) << 16);
    put_u64s(
        mem,
        layout::GDT,
        &[0, 0x00AF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF, tss_low, 0],
    );
    mem.write(layout::CODE, guest::code());
}

fn segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        ..Default::default()
    }
}

/// Long mode, paging on, at the guest's entry.
fn setup_vcpu(vcpu: &VcpuFd) -> Result<(), HarnessError> {
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    let code = segment(0x08, 0xB, true);
    let data = segment(0x10, 0x3, false);
    sregs.cs = code;
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = kvm_segment {
        base: layout::TSS,
        limit: 0x67,
        selector: 0x18,
        type_: 0xB,
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = layout::GDT;
    sregs.gdt.limit = 5 * 8 - 1;
    // CR0: PE, MP, ET, NE, WP, PG. CR4: PAE, OSFXSR, OSXMMEXCPT. EFER: LME, LMA.
    sregs.cr0 = 0x8001_0033;
    sregs.cr4 = 0x620;
    sregs.cr3 = layout::PML4;
    sregs.efer = 0x500;
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
    let mut regs = vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
    regs.rip = layout::CODE;
    regs.rsp = layout::STACK_TOP;
    regs.rflags = 0x2;
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
}

impl Harness {
    /// Builds the VM and starts the guest (see the module docs).
    pub fn boot(config: &HarnessConfig) -> Result<Harness, HarnessError> {
        let kvm = kvm_usable()?;
        let vm = Arc::new(kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?);
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let mut mem = GuestMemory::new(layout::RAM as usize).map_err(|e| HarnessError::Kvm {
            op: "mmap",
            errno: e.raw_os_error().unwrap_or(0),
        })?;
        load_guest(&mut mem);
        put_u64s(
            &mut mem,
            layout::CTRL + ctrl::MODE,
            &[u64::from(config.grow)],
        );
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: mem.len() as u64,
            userspace_addr: mem.host_address(),
        };
        // SAFETY: the region is our own mapping of exactly that size, kept alive by the
        // harness until the vCPU thread has been joined.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        let routes = GsiRoutes::new(vm.clone());
        let mut functions = Vec::new();
        let mut triggers = Vec::new();
        for (k, f) in (0u64..).zip(&config.functions) {
            let backend = KvmMsix::new(vm.clone(), routes.clone(), f.entries, f.budget)?;
            triggers.push(backend.triggers());
            let bar = BAR_BASE + k * BAR_STRIDE;
            let function = Function::new(bar, f.entries, backend, f.strategy)?;
            functions.push(Arc::new(Mutex::new(function)));
        }
        let entries = config.functions.first().map_or(0, |f| f.entries);
        let events = Arc::new(Events {
            active: (0..entries).map(|_| AtomicBool::new(false)).collect(),
            announced: AtomicU64::new(0),
            done: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            fault: AtomicU64::new(0),
            irr_at_exit: AtomicU64::new(0),
            abort: AtomicBool::new(false),
        });
        register_signal_handler(SIGRTMIN(), kick).map_err(|e| HarnessError::Kvm {
            op: "sigaction",
            errno: e.errno(),
        })?;
        let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        setup_vcpu(&vcpu)?;
        let mem = Arc::new(mem);
        let runner = VcpuRunner {
            vcpu,
            exits: Exits {
                functions: functions.clone(),
                events: events.clone(),
                address: 0,
            },
        };
        let vcpu = spawn("genmsi-kvm-vcpu0", move || runner.run())?;
        Ok(Harness {
            vcpu: Some(vcpu),
            functions,
            triggers,
            routes,
            events,
            vm,
            mem,
        })
    }

    /// Function `k`, locked (its emulation, backend and recorded errors).
    ///
    /// # Panics
    /// If there is no function `k`.
    pub fn function(&self, k: usize) -> MutexGuard<'_, Function> {
        self.functions[k].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Function `k`, shared (for a device model).
    ///
    /// # Panics
    /// If there is no function `k`.
    pub fn function_handle(&self, k: usize) -> Arc<Mutex<Function>> {
        self.functions[k].clone()
    }

    /// The device side of function `k`.
    ///
    /// # Panics
    /// If there is no function `k`.
    pub fn triggers(&self, k: usize) -> &Arc<Triggers> {
        &self.triggers[k]
    }

    /// The VM's routing table.
    pub fn routes(&self) -> &SharedRoutes {
        &self.routes
    }

    /// What the guest signalled.
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// Guest RAM.
    pub fn memory(&self) -> &Arc<GuestMemory> {
        &self.mem
    }

    /// The VM.
    pub fn vm(&self) -> &Arc<VmFd> {
        &self.vm
    }

    /// Arrivals the guest counted on `vector`.
    pub fn count(&self, vector: u32) -> u64 {
        self.mem
            .u64_at(layout::COUNTS + 8 * u64::from(vector & 0xFF))
            .load(Ordering::Acquire)
    }

    /// Arrivals the guest counted on every vector.
    pub fn total(&self) -> u64 {
        (0..256).map(|v| self.count(v)).sum()
    }

    /// Arrivals the guest counted on the vectors it gives its entries
    /// ([`guest::FIRST_VECTOR`], [`guest::VECTORS`] of them).
    pub fn counted(&self) -> u64 {
        (guest::FIRST_VECTOR..guest::FIRST_VECTOR + guest::VECTORS)
            .map(|v| self.count(v))
            .sum()
    }

    /// A control block field.
    pub fn ctrl(&self, field: u64) -> &AtomicU64 {
        self.mem.u64_at(layout::CTRL + field)
    }

    fn check(&self) -> Result<(), HarnessError> {
        match self.events.fault.load(Ordering::Acquire) {
            0 => Ok(()),
            fault => Err(HarnessError::Guest { fault }),
        }
    }

    /// Waits until `done` holds (or the guest faults, or `timeout` passes).
    pub fn wait_for(
        &self,
        what: &'static str,
        timeout: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<(), HarnessError> {
        let start = Instant::now();
        while !done(self) {
            self.check()?;
            if start.elapsed() > timeout {
                return Err(HarnessError::Timeout { what });
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }

    /// The guest does `command` on entry `entry` of function 0 (with real table or PBA
    /// accesses); returns its result (a PBA bit for [`Command::ReadPending`]).
    pub fn command(&self, command: Command, entry: u32, value: u32) -> Result<u64, HarnessError> {
        self.ctrl(ctrl::ARG)
            .store(u64::from(entry), Ordering::Relaxed);
        self.ctrl(ctrl::VALUE)
            .store(u64::from(value), Ordering::Relaxed);
        self.ctrl(ctrl::CMD)
            .store(command as u64, Ordering::Release);
        self.wait_for("a guest command", COMMAND_TIMEOUT, |h| {
            h.ctrl(ctrl::CMD).load(Ordering::Acquire) == 0
        })?;
        Ok(self.ctrl(ctrl::RESULT).load(Ordering::Acquire))
    }

    /// Stops the guest and joins the vCPU thread.
    pub fn stop(mut self) -> Result<(), HarnessError> {
        self.ctrl(ctrl::STOP).store(1, Ordering::Release);
        let exited = self.wait_for("the guest to exit", COMMAND_TIMEOUT, |h| {
            h.events.exited.load(Ordering::Acquire)
        });
        self.join()?;
        exited
    }

    fn join(&mut self) -> Result<(), HarnessError> {
        let Some(vcpu) = self.vcpu.take() else {
            return Ok(());
        };
        if !self.events.exited.load(Ordering::Acquire) {
            self.events.abort.store(true, Ordering::Release);
            // The vCPU may sit in KVM_RUN: the signal makes it return EINTR.
            while !vcpu.is_finished() {
                let _ = vcpu.kill(SIGRTMIN());
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        vcpu.join().unwrap_or(Err(HarnessError::Panicked {
            thread: "the vCPU thread",
        }))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Vectors set in the IRR of a local APIC state (SDM 11.8.4: 8 registers of 32 bits from
/// offset 0x200, 16 bytes apart).
fn irr_bits(lapic: &kvm_bindings::kvm_lapic_state) -> u64 {
    (0..8)
        .map(|k| {
            let at = 0x200 + 16 * k;
            let bytes = [0, 1, 2, 3].map(|b| lapic.regs[at + b] as u8);
            u64::from(u32::from_le_bytes(bytes).count_ones())
        })
        .sum()
}

/// The vCPU thread: runs the guest, serves its exits.
struct VcpuRunner {
    vcpu: VcpuFd,
    exits: Exits,
}

/// What serves the exits.
struct Exits {
    functions: Vec<Arc<Mutex<Function>>>,
    events: Arc<Events>,
    /// The last CONFIG_ADDRESS written.
    address: u32,
}

impl VcpuRunner {
    fn run(mut self) -> Result<(), HarnessError> {
        let r = self.serve();
        // What the local APIC still holds when the guest stops: delivered by KVM, never
        // taken by the guest.
        if let Ok(lapic) = self.vcpu.get_lapic() {
            self.exits
                .events
                .irr_at_exit
                .store(irr_bits(&lapic), Ordering::Release);
        }
        if let Err(HarnessError::Guest { fault }) = &r {
            self.exits.events.fault.store(*fault, Ordering::Release);
        }
        self.exits.events.exited.store(true, Ordering::Release);
        r
    }

    fn serve(&mut self) -> Result<(), HarnessError> {
        loop {
            if self.exits.events.abort.load(Ordering::Acquire) {
                return Err(HarnessError::Timeout {
                    what: "the guest (aborted)",
                });
            }
            match self.vcpu.run() {
                Ok(exit) => {
                    if self.exits.serve(exit)? {
                        return Ok(());
                    }
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => return Err(kvm_err("KVM_RUN")(e)),
            }
        }
    }
}

impl Exits {
    /// The function and offset CONFIG_ADDRESS selects (bus 0, function 0 only), plus `port`'s
    /// byte within the data dword.
    fn config_target(&self, port: u16) -> Option<(usize, u16)> {
        let a = self.address;
        let enabled = a & 0x8000_0000 != 0;
        let (bus, device, function) = ((a >> 16) & 0xFF, (a >> 11) & 0x1F, (a >> 8) & 0x7);
        if !enabled || bus != 0 || function != 0 {
            return None;
        }
        let offset = (a & 0xFC) as u16 + (port - port::CONFIG_DATA);
        Some((device as usize, offset))
    }

    fn function(&self, k: usize) -> Option<MutexGuard<'_, Function>> {
        let f = self.functions.get(k)?;
        Some(f.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Serves one exit; true when the guest has finished.
    fn serve(&mut self, exit: VcpuExit<'_>) -> Result<bool, HarnessError> {
        let config_data = port::CONFIG_DATA..port::CONFIG_DATA + 4;
        {
            match exit {
                VcpuExit::IoOut(port::CONFIG_ADDRESS, data) if data.len() == 4 => {
                    self.address = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                }
                VcpuExit::IoIn(port, data) if config_data.contains(&port) => {
                    data.fill(0xFF);
                    if let Some((k, offset)) = self.config_target(port) {
                        if let Some(f) = self.function(k) {
                            f.config_read(offset, data);
                        }
                    }
                }
                VcpuExit::IoOut(port, data) if config_data.contains(&port) => {
                    if let Some((k, offset)) = self.config_target(port) {
                        if let Some(mut f) = self.function(k) {
                            f.config_write(offset, data);
                        }
                    }
                }
                VcpuExit::IoOut(port::DONE, _) => self.events.done.store(true, Ordering::Release),
                VcpuExit::IoOut(port::EXIT, _) => return Ok(true),
                VcpuExit::IoOut(port::FAULT, data) => {
                    let mut v = [0u8; 4];
                    v[..data.len().min(4)].copy_from_slice(&data[..data.len().min(4)]);
                    let fault = u64::from(u32::from_le_bytes(v));
                    return Err(HarnessError::Guest { fault });
                }
                VcpuExit::IoIn(_, data) => data.fill(0xFF),
                VcpuExit::IoOut(..) => {}
                VcpuExit::MmioRead(address, data) => {
                    data.fill(0xFF);
                    let k = self
                        .functions
                        .iter()
                        .position(|f| f.lock().unwrap_or_else(|e| e.into_inner()).claims(address));
                    if let Some(f) = k.and_then(|k| self.functions.get(k)) {
                        f.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .mmio_read(address, data);
                    }
                }
                VcpuExit::MmioWrite(address, data)
                    if address == BAR_BASE + guest::DOORBELL && data.len() == 4 =>
                {
                    let entry = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                    if let Some(a) = self.events.active.get(entry as usize) {
                        a.store(true, Ordering::Release);
                        self.events.announced.fetch_add(1, Ordering::AcqRel);
                    }
                }
                VcpuExit::MmioWrite(address, data) => {
                    for f in &self.functions {
                        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
                        if f.claims(address) {
                            f.mmio_write(address, data);
                        }
                    }
                }
                VcpuExit::Intr => {}
                other => {
                    let code = match other {
                        VcpuExit::Hlt => 1,
                        VcpuExit::Shutdown => 2,
                        VcpuExit::FailEntry(..) => 3,
                        VcpuExit::InternalError => 4,
                        _ => 0xFF,
                    };
                    return Err(HarnessError::Guest {
                        fault: 0x200 + code,
                    });
                }
            }
        }
        Ok(false)
    }
}
