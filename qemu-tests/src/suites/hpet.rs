//! HPET FSB delivery through `genmsi-x86`'s HPET store (`-global hpet.msi=on`).

use crate::devices::hpet::{self, Hpet};
use crate::{check, counts, platform, time};
use alloc::boxed::Box;
use genmsi::{AllocOpts, DeviceMeta, SlotId};
use genmsi_x86::HpetStore;

/// Counter ticks (about 7 ms at QEMU's 100 MHz HPET) until a timer armed now fires.
const TICKS: u64 = 700_000;

/// Runs the HPET checks on the platform `p`.
pub fn run(p: &platform::Platform) {
    let hpet = Hpet::new();
    let mut store = HpetStore::new(hpet);
    let Some(timer) = (0..hpet.timers()).find(|&n| store.fsb_capable(n)) else {
        check!(
            "hpet: a timer can deliver by FSB (-global hpet.msi=on)",
            false
        );
        return;
    };
    // The comparator first, with the main counter stopped: a timer enabled with a stale
    // comparator fires at once.
    hpet.arm(timer, TICKS);
    let dev = p.sys.add_device("hpet", DeviceMeta::default());
    p.sys
        .create_device_domain(dev, SlotId::Default, Box::new(store), p.vector)
        .expect("device domain");
    let irq = p
        .sys
        .alloc_at(dev, SlotId::Default, timer, &AllocOpts::default())
        .expect("alloc timer");
    let msg = p.sys.desc(dev, SlotId::Default, timer).expect("desc").msg;
    let config = hpet.timer_config(timer);
    let target = p
        .with_vector(|v| v.target(irq))
        .expect("active irq has a target");
    let raw_before = counts::on(target.cpu, target.vector.0);
    hpet.enable();
    let got = time::wait_until(200, || p.sys.table().count(irq) >= 1);
    time::delay(10);
    let raw = || counts::on(target.cpu, target.vector.0) - raw_before;
    check!(
        "hpet: timer FSB message delivered through the HPET store, counted once",
        got && p.sys.table().count(irq) == 1 && raw() == 1 && config & hpet::TN_FSB_ENABLE != 0,
        "timer {timer} msg {msg:?} config {config:#x} count {}",
        p.sys.table().count(irq)
    );

    p.sys.free_index(dev, SlotId::Default, timer).expect("free");
    let freed = hpet.timer_config(timer);
    hpet.arm(timer, TICKS / 10);
    time::delay(20);
    check!(
        "hpet: a freed timer has interrupt and FSB delivery disabled and no longer delivers",
        freed & (hpet::TN_INT_ENABLE | hpet::TN_FSB_ENABLE) == 0
            && raw() == 1
            && platform::unmapped() == 0,
        "config after free {freed:#x}, raw count {} unmapped {}",
        raw(),
        platform::unmapped()
    );
}
