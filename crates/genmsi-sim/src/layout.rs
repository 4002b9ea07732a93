//! Configuration-space layouts of the simulated PCI functions (PCI Express Base specification:
//! 7.5.1 type 0 header, 7.7.1 MSI capability, 7.7.2 MSI-X capability).

/// Offset of the MSI-X capability in [`msix_function`].
pub const MSIX_CAP: u16 = 0x70;
/// Offset of the MSI capability in [`msi32_function`].
pub const MSI_CAP: u16 = 0x50;
/// The BAR holding the MSI-X table (offset 0) and, from [`PBA_OFFSET`], the PBA.
pub const MSIX_BAR: u8 = 0;
/// Offset of the PBA in the MSI-X BAR.
pub const PBA_OFFSET: u32 = 0x8000;

fn header(vendor: u16, device: u16, cap: u8, pin: u8) -> Vec<u8> {
    let mut c = vec![0u8; 4096];
    c[0..2].copy_from_slice(&vendor.to_le_bytes());
    c[2..4].copy_from_slice(&device.to_le_bytes());
    // Status (0x06) bit 4: capabilities list present; capabilities pointer at 0x34.
    c[0x06] = 1 << 4;
    c[0x34] = cap;
    // Interrupt pin (0x3D): 1 = INTA.
    c[0x3D] = pin;
    c
}

/// A PCI Express function with an MSI-X capability of `entries` entries: table at offset 0
/// of BAR0, PBA at 0x8000 of BAR0.
pub fn msix_function(vendor: u16, device: u16, entries: u32) -> Vec<u8> {
    let mut c = header(vendor, device, MSIX_CAP as u8, 1);
    let at = usize::from(MSIX_CAP);
    // ID 0x11, next 0; Message Control: table size - 1 in bits 10:0.
    c[at] = 0x11;
    let control = (entries - 1) as u16;
    c[at + 2..at + 4].copy_from_slice(&control.to_le_bytes());
    // Table Offset/BIR and PBA Offset/BIR: offset in bits 31:3, BIR in bits 2:0.
    c[at + 4..at + 8].copy_from_slice(&u32::from(MSIX_BAR).to_le_bytes());
    c[at + 8..at + 12].copy_from_slice(&(PBA_OFFSET | u32::from(MSIX_BAR)).to_le_bytes());
    c
}

/// A conventional function with only a 32-bit, single-message MSI capability.
pub fn msi32_function(vendor: u16, device: u16) -> Vec<u8> {
    let mut c = header(vendor, device, MSI_CAP as u8, 1);
    c.truncate(256);
    // ID 0x05, next 0, Message Control 0: 32-bit address, one message, no masking.
    c[usize::from(MSI_CAP)] = 0x05;
    c
}

/// A function with no MSI capability: it signals on its INTx pin only.
pub fn intx_function(vendor: u16, device: u16) -> Vec<u8> {
    let mut c = header(vendor, device, 0, 1);
    c[0x06] = 0;
    c.truncate(256);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use genmsi_pci::{ByteConfig, ConfigSpace};

    // PCIe 7.7.2, by hand: a 64-entry table in BAR0 at 0 and the PBA at 0x8000 give Message
    // Control 0x003F, Table Offset/BIR 0x0000_0000, PBA Offset/BIR 0x0000_8000.
    #[test]
    fn msix_capability_bytes() {
        let c = ByteConfig::new(msix_function(0x8086, 0x1572, 64));
        assert_eq!(c.read_u8(0x34).unwrap(), 0x70);
        assert_eq!(c.read_u32(0x70).unwrap(), 0x003F_0011);
        assert_eq!(c.read_u32(0x74).unwrap(), 0);
        assert_eq!(c.read_u32(0x78).unwrap(), 0x8000);
    }
}
