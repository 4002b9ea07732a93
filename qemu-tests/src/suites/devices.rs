//! The device models behave as the genmsi checks assume, programmed by hand with
//! compatibility-format messages (no genmsi involved). When a genmsi check fails, this suite
//! tells whether the device recipe or the library is at fault.

use crate::devices::{e1000e::E1000e, edu::Edu, hpet, ioapic::IoApic};
use crate::{check, counts, cpu, lapic, pci, time};

const EDU_VECTOR: u8 = 0x41;
const NIC_VECTOR0: u8 = 0x42;
const NIC_VECTOR1: u8 = 0x43;
const INTX_VECTOR: u8 = 0x44;
const HPET_VECTOR: u8 = 0x45;

fn compat(vector: u8) -> (u64, u32) {
    (0xfee0_0000, u32::from(vector))
}

/// Runs every device probe.
pub fn run() {
    for v in [EDU_VECTOR, NIC_VECTOR0, NIC_VECTOR1, HPET_VECTOR] {
        cpu::set_vector_handler(v, counts::count_and_eoi);
    }
    edu_msi();
    e1000e_msix();
    ioapic_intx();
    hpet_fsb();
}

fn edu_msi() {
    let Some(edu) = Edu::find(0) else {
        check!("devices: edu present", false);
        return;
    };
    let cap = edu.pci.find_capability(pci::CAP_MSI).expect("edu has MSI");
    let control = edu.pci.read16(cap + 2);
    let (addr, data) = compat(EDU_VECTOR);
    edu.pci.write32(cap + 4, addr as u32);
    let data_off = if control & (1 << 7) != 0 {
        edu.pci.write32(cap + 8, 0);
        cap + 0xc
    } else {
        cap + 8
    };
    edu.pci.write16(data_off, data as u16);
    edu.pci.write16(cap + 2, control | 1);
    edu.raise(0);
    edu.raise(0);
    let ok = time::wait_until(time::LATE_MS, || counts::total(EDU_VECTOR) == 2);
    check!(
        "devices: edu raises MSI",
        ok,
        "count {}",
        counts::total(EDU_VECTOR)
    );
    edu.ack();
    edu.pci.write16(cap + 2, control & !1);
}

fn e1000e_msix() {
    let Some(nic) = E1000e::find() else {
        check!("devices: e1000e present", false);
        return;
    };
    let cap = nic
        .pci
        .find_capability(pci::CAP_MSIX)
        .expect("e1000e has MSI-X");
    let control = nic.pci.read16(cap + 2);
    let table_reg = nic.pci.read32(cap + 4);
    let pba_reg = nic.pci.read32(cap + 8);
    let table = nic
        .pci
        .memory_bar((table_reg & 7) as u8)
        .expect("table BAR");
    let pba = nic.pci.memory_bar((pba_reg & 7) as u8).expect("PBA BAR");
    let (t, p) = (u64::from(table_reg & !7), u64::from(pba_reg & !7));
    crate::println!(
        "e1000e: {} MSI-X vectors, table {:#x}+{t:#x}, PBA {:#x}+{p:#x}",
        (control & 0x7ff) + 1,
        table.base(),
        pba.base()
    );
    // Function mask while programming, then enable.
    nic.pci.write16(cap + 2, control | (1 << 14) | (1 << 15));
    for (i, v) in [(0u64, NIC_VECTOR0), (1, NIC_VECTOR1)] {
        let (addr, data) = compat(v);
        table.write32(t + 16 * i, addr as u32);
        table.write32(t + 16 * i + 4, 0);
        table.write32(t + 16 * i + 8, data);
        table.write32(t + 16 * i + 12, 0);
    }
    nic.pci.write16(cap + 2, (control | (1 << 15)) & !(1 << 14));
    let per_fire = crate::devices::e1000e::MAX_MESSAGES_PER_RAISE;
    // Each fire sends one message, plus at most one throttling echo (see
    // `MAX_MESSAGES_PER_RAISE`), which a loaded host may delay past any fixed wait.
    let settle = |vector: u8, at_least: u32| {
        time::wait_until(time::LATE_MS, || counts::total(vector) >= at_least);
        time::delay(5);
        counts::total(vector)
    };
    nic.fire(0);
    let n0 = settle(NIC_VECTOR0, 1);
    nic.fire(1);
    let n1 = settle(NIC_VECTOR1, 1);
    let ok0 = (1..=per_fire).contains(&n0);
    let ok1 = (1..=per_fire).contains(&n1);
    check!(
        "devices: e1000e fires MSI-X vectors 0 and 1",
        ok0 && ok1,
        "counts {} {}",
        counts::total(NIC_VECTOR0),
        counts::total(NIC_VECTOR1)
    );
    // Mask vector 1, fire: PBA bit 1 is set and nothing is delivered; unmask delivers.
    table.write32(t + 16 + 12, 1);
    time::delay(5);
    let before = counts::total(NIC_VECTOR1);
    nic.fire(1);
    time::delay(5);
    let pending = pba.read32(p) & 2 != 0;
    let held = counts::total(NIC_VECTOR1) == before;
    table.write32(t + 16 + 12, 0);
    let delivered = (before + 1..=before + per_fire).contains(&settle(NIC_VECTOR1, before + 1));
    let cleared = pba.read32(p) & 2 == 0;
    check!(
        "devices: e1000e masked vector sets PBA, unmask delivers",
        pending && held && delivered && cleared,
        "pending {pending} held {held} delivered {delivered} cleared {cleared}"
    );
    nic.quiesce();
    nic.pci.write16(cap + 2, control);
}

static EDU_INTX: spin::Once<Edu> = spin::Once::new();

fn intx_handler(vector: u8, cpu: u32) {
    counts::record(vector, cpu);
    // Quiet the device before EOI, or the level line re-fires at once.
    if let Some(edu) = EDU_INTX.get() {
        edu.ack();
    }
    lapic::eoi();
}

fn ioapic_intx() {
    let Some(edu) = Edu::find(1) else {
        check!("devices: second edu present", false);
        return;
    };
    EDU_INTX.call_once(|| edu);
    cpu::set_vector_handler(INTX_VECTOR, intx_handler);
    let Some(gsi) = crate::suites::ioapic::gsi_of(edu.pci) else {
        check!("devices: the second edu has an interrupt pin", false);
        return;
    };
    let ioapic = IoApic::new();
    // Vector, fixed, physical, active low (bit 13), level (bit 15), destination APIC 0.
    let rte = u64::from(INTX_VECTOR) | (1 << 13) | (1 << 15);
    ioapic.write_rte(gsi, rte);
    edu.raise(0);
    let ok = time::wait_until(time::LATE_MS, || counts::total(INTX_VECTOR) == 1);
    time::delay(5);
    let once = counts::total(INTX_VECTOR) == 1;
    let irr_clear = ioapic.read_rte(gsi) & crate::devices::ioapic::RTE_REMOTE_IRR == 0;
    check!(
        "devices: edu INTx through the IO-APIC (level, acked before EOI)",
        ok && once && irr_clear,
        "gsi {gsi} count {} remote irr clear {irr_clear}",
        counts::total(INTX_VECTOR)
    );
    ioapic.write_rte(gsi, crate::devices::ioapic::RTE_MASKED);
}

fn hpet_fsb() {
    let hpet = hpet::Hpet::new();
    let timer = (0..hpet.timers()).find(|&n| hpet.timer_config(n) & hpet::TN_FSB_CAPABLE != 0);
    let Some(n) = timer else {
        check!("devices: an HPET timer can deliver by FSB", false);
        return;
    };
    let (addr, data) = compat(HPET_VECTOR);
    hpet.regs()
        .write64(0x110 + 0x20 * u64::from(n), (addr << 32) | u64::from(data));
    hpet.enable();
    hpet.arm(n, 100_000);
    hpet.set_timer_config(n, hpet::TN_FSB_ENABLE | hpet::TN_INT_ENABLE);
    let ok = time::wait_until(time::LATE_MS, || counts::total(HPET_VECTOR) == 1);
    check!(
        "devices: HPET timer delivers by FSB",
        ok,
        "timer {n}, count {}",
        counts::total(HPET_VECTOR)
    );
    hpet.set_timer_config(n, 0);
}
