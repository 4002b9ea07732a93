//! A PCI INTx line through `genmsi-x86`'s IO-APIC store: level-triggered, active low, with the
//! device quieted by the irq's handler before the EOI (which clears Remote IRR).

use crate::devices::{edu::Edu, ioapic::IoApic, ioapic::RTE_REMOTE_IRR};
use crate::{check, platform, time};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU32, Ordering};
use genmsi::{AllocOpts, DeviceId, DeviceMeta, HandlerId, Irq, SlotId};
use genmsi_pci::{intx_path, IntxPin};
use genmsi_x86::{IoApicStore, PinConfig, Trigger};

/// The requester id QEMU's q35 IO-APIC uses for its interrupt writes (bus 0xff, devfn 0).
pub const IOAPIC_REQUESTER_ID: u16 = 0xff00;

static HANDLED: AtomicU32 = AtomicU32::new(0);
static DEVICE: spin::Once<Edu> = spin::Once::new();

/// The irq's handler: acknowledge the device so its line drops before the EOI.
fn quiet_device(_irq: Irq, _cpu: u32, _data: u32) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
    if let Some(edu) = DEVICE.get() {
        edu.ack();
    }
}

/// The IO-APIC device domain that [`run`] set up, for further checks on the same pin.
#[derive(Clone, Copy, Debug)]
pub struct Pin {
    /// The IO-APIC's device.
    pub dev: DeviceId,
    /// The pin the edu device's INTA is wired to.
    pub gsi: u32,
    /// The edu device.
    pub edu: Edu,
    /// The handler that quiets it.
    pub handler: HandlerId,
}

/// Interrupts the pin's handler has seen.
pub fn handled() -> u32 {
    HANDLED.load(Ordering::SeqCst)
}

/// Runs the IO-APIC checks on the platform `p`; `tag` names the configuration in check names.
pub fn run(p: &platform::Platform, tag: &str) -> Option<Pin> {
    let Some(edu) = Edu::find(0) else {
        check!("ioapic: an edu device for INTx", false);
        return None;
    };
    let edu = *DEVICE.call_once(|| edu);
    let Some(gsi) = gsi_of(edu.pci) else {
        check!("ioapic: the edu device has an interrupt pin", false);
        return None;
    };
    let mut store = IoApicStore::new(IoApic::new());
    let level_low = PinConfig {
        trigger: Trigger::Level,
        active_low: true,
    };
    store
        .set_pin(gsi, level_low)
        .expect("q35 IO-APIC has 24 pins");
    let dev = p
        .sys
        .add_device("ioapic", DeviceMeta::requester(IOAPIC_REQUESTER_ID));
    p.sys
        .create_device_domain(dev, SlotId::Default, Box::new(store), p.parent())
        .expect("device domain");
    let handler = p
        .sys
        .register_handler(Box::new(quiet_device))
        .expect("handler slot");
    // Allocate inactive, attach the handler, then activate: a line that is already asserted
    // must never find the irq without the handler that quiets it.
    let opts = AllocOpts {
        activate: false,
        ..AllocOpts::default()
    };
    let irq = p
        .sys
        .alloc_at(dev, SlotId::Default, gsi, &opts)
        .expect("alloc pin");
    p.sys.set_handler(irq, handler, 0).expect("set handler");
    p.sys.activate(irq).expect("activate");
    let rte = p
        .sys
        .with_store::<IoApicStore<IoApic>, _>(dev, SlotId::Default, |s| s.read_rte(gsi))
        .expect("store")
        .expect("pin");
    // Remapped format (VT-d 5.1.5.1): bit 48 set, trigger still in bit 15.
    let format_ok = (rte & (1 << 48) != 0) == p.remap.is_some();
    let level = format_ok && rte & (1 << 15) != 0 && rte & (1 << 13) != 0 && rte & (1 << 16) == 0;
    check!(
        &alloc::format!("ioapic{tag}: pin {gsi} programmed level, active low, unmasked"),
        level,
        "RTE {rte:#018x}"
    );

    edu.raise(0);
    let got = time::wait_until(time::LATE_MS, || HANDLED.load(Ordering::SeqCst) >= 1);
    time::delay(5);
    let ioapic = IoApic::new();
    let once = HANDLED.load(Ordering::SeqCst) == 1 && p.sys.table().count(irq) == 1;
    let irr_clear = ioapic.read_rte(gsi) & RTE_REMOTE_IRR == 0;
    check!(
        &alloc::format!(
            "ioapic{tag}: INTx delivered once, device quieted before EOI, Remote IRR clear"
        ),
        got && once && irr_clear && edu.status() == 0,
        "handled {} counted {} remote irr clear {irr_clear}",
        HANDLED.load(Ordering::SeqCst),
        p.sys.table().count(irq)
    );

    // A level line raised while the pin is masked is delivered once the pin is unmasked.
    p.sys.mask(irq).expect("mask");
    edu.raise(0);
    time::delay(5);
    let held = HANDLED.load(Ordering::SeqCst) == 1;
    p.sys.unmask(irq).expect("unmask");
    let delivered = time::wait_until(time::LATE_MS, || HANDLED.load(Ordering::SeqCst) == 2);
    time::delay(5);
    check!(
        &alloc::format!("ioapic{tag}: a level line held while masked is delivered on unmask, once"),
        held && delivered && HANDLED.load(Ordering::SeqCst) == 2,
        "held {held} handled {}",
        HANDLED.load(Ordering::SeqCst)
    );

    p.sys.free_index(dev, SlotId::Default, gsi).expect("free");
    edu.raise(0);
    time::delay(10);
    let silent = HANDLED.load(Ordering::SeqCst) == 2;
    edu.ack();
    check!(
        &alloc::format!("ioapic{tag}: a freed pin no longer delivers"),
        silent && ioapic.read_rte(gsi) & (1 << 16) != 0,
        "handled {}",
        HANDLED.load(Ordering::SeqCst)
    );
    Some(Pin {
        dev,
        gsi,
        edu,
        handler,
    })
}

/// The IO-APIC pin `f`'s INTx line reaches: its Interrupt Pin swizzled through every bridge
/// above it to a slot on bus 0 (`genmsi-pci`'s topology walk over the enumerated bridges),
/// then q35's routing of that slot (below 0x18) and pin to PIRQ E-H, GSI 20 + (slot + pin) % 4
/// (pin 0 = INTA#).
pub fn gsi_of(f: crate::pci::PciFunction) -> Option<u32> {
    let pin = IntxPin::from_register(f.read8(genmsi_pci::config::header::INTERRUPT_PIN))
        .ok()
        .flatten()?;
    let at = crate::pcidev::address(f);
    let path = intx_path(crate::pcidev::bridges(), at).ok()?;
    let root_pin = path.pin(pin);
    let gsi = 20 + (u32::from(path.root.device()) + u32::from(root_pin.register() - 1)) % 4;
    crate::println!(
        "ioapic: {at} INT{:?} arrives at {} as INT{root_pin:?}: GSI {gsi}",
        pin,
        path.root
    );
    Some(gsi)
}
