//! Drivers for the register blocks of QEMU's device models: only what the checks need to make
//! a device raise, acknowledge and report interrupts. Interrupt *routing* (MSI, MSI-X, IO-APIC
//! and HPET message stores, remapping) is the genmsi crates' job, not these drivers'.

pub mod e1000e;
pub mod edu;
pub mod hpet;
pub mod ioapic;
pub mod vtd;
