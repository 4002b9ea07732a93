//! The processors the firmware describes: the ACPI MADT (ACPI 6.5, 5.2.12), reached through the
//! RSDP that SeaBIOS placed in the BIOS area (5.2.5.1) and the RSDT or XSDT it names.
//!
//! Only what the kernel needs: the local APIC ids of the enabled processors (entry type 0,
//! Processor Local APIC; type 9, Processor Local x2APIC), in table order, so that CPUs are
//! started by the ids the machine really has rather than assumed to be 0..N.

use alloc::vec::Vec;

/// Where the firmware may place the RSDP: the BIOS read-only area (ACPI 5.2.5.1).
const BIOS_AREA: core::ops::Range<u64> = 0xe_0000..0x10_0000;

fn read<const N: usize>(at: u64) -> [u8; N] {
    // SAFETY: callers pass addresses in the identity-mapped low 4 GiB that the firmware's
    // tables (or the BIOS area being searched) occupy; only reads, of plain bytes.
    unsafe { core::ptr::read_unaligned(at as *const [u8; N]) }
}

fn u32_at(at: u64) -> u32 {
    u32::from_le_bytes(read(at))
}

fn u64_at(at: u64) -> u64 {
    u64::from_le_bytes(read(at))
}

fn checksum_ok(at: u64, len: u64) -> bool {
    (0..len).fold(0u8, |sum, i| sum.wrapping_add(read::<1>(at + i)[0])) == 0
}

/// The RSDP's address: signature "RSD PTR " on a 16-byte boundary, first 20 bytes summing to 0.
fn rsdp() -> Option<u64> {
    BIOS_AREA
        .step_by(16)
        .find(|&at| &read::<8>(at) == b"RSD PTR " && checksum_ok(at, 20))
}

/// The system description tables the RSDT (32-bit entries) or XSDT (64-bit) lists.
fn tables() -> Vec<u64> {
    let Some(rsdp) = rsdp() else {
        return Vec::new();
    };
    let revision = read::<1>(rsdp + 15)[0];
    let (root, width) = if revision >= 2 && u64_at(rsdp + 24) != 0 {
        (u64_at(rsdp + 24), 8)
    } else {
        (u64::from(u32_at(rsdp + 16)), 4)
    };
    let len = u64::from(u32_at(root + 4));
    if len < 36 || !checksum_ok(root, len) {
        return Vec::new();
    }
    (36..len)
        .step_by(width)
        .map(|off| {
            if width == 8 {
                u64_at(root + off)
            } else {
                u64::from(u32_at(root + off))
            }
        })
        .collect()
}

/// The local APIC ids of the enabled processors the MADT lists, in table order (the boot
/// processor first on QEMU), or `None` when no valid MADT is found.
pub fn apic_ids() -> Option<Vec<u32>> {
    let madt = tables().into_iter().find(|&t| &read::<4>(t) == b"APIC")?;
    let len = u64::from(u32_at(madt + 4));
    if !checksum_ok(madt, len) {
        return None;
    }
    let mut ids = Vec::new();
    let mut at = madt + 44;
    while at + 2 <= madt + len {
        let [kind, size] = read::<2>(at);
        if size < 2 {
            break;
        }
        match kind {
            // Processor Local APIC: ACPI id, APIC id (8 bits), flags (bit 0: enabled).
            0 if size >= 8 && u32_at(at + 4) & 1 != 0 => ids.push(u32::from(read::<1>(at + 3)[0])),
            // Processor Local x2APIC: reserved, x2APIC id (32 bits), flags, ACPI uid.
            9 if size >= 16 && u32_at(at + 8) & 1 != 0 => ids.push(u32_at(at + 4)),
            _ => {}
        }
        at += u64::from(size);
    }
    Some(ids)
}
