//! Configuration space: the access trait, a byte-array implementation, and the few header
//! registers interrupt set-up touches (Command, Status, Capabilities Pointer, Interrupt Pin).
//!
//! Offsets and bits follow the PCI Express Base Specification, section 7.5.1.1 (the header
//! common to Type 0 and Type 1 functions). All multi-byte registers are little endian.

use core::fmt;

/// Why a configuration access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The access reaches beyond the function's configuration space.
    OutOfRange {
        /// The offset of the access.
        offset: u16,
        /// Its width in bytes.
        width: u8,
        /// The size of the configuration space.
        size: u16,
    },
    /// The offset is not a multiple of the width (configuration accesses are naturally
    /// aligned).
    Misaligned {
        /// The offset of the access.
        offset: u16,
        /// Its width in bytes.
        width: u8,
    },
    /// The platform could not complete the access (no device answered, a bus error).
    Failed {
        /// The offset of the access.
        offset: u16,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::OutOfRange {
                offset,
                width,
                size,
            } => write!(
                f,
                "config access of {width} bytes at {offset:#x} is beyond the {size:#x}-byte space"
            ),
            ConfigError::Misaligned { offset, width } => {
                write!(
                    f,
                    "config access of {width} bytes at {offset:#x} is misaligned"
                )
            }
            ConfigError::Failed { offset } => write!(f, "config access at {offset:#x} failed"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// One function's configuration space: byte, word and dword reads and writes.
///
/// Implemented by the bare-metal kernel (ECAM or port I/O), by the simulator, and by
/// [`ByteConfig`] for tests. Reads take `&self`: configuration reads of the registers this
/// crate uses have no side effects. Accesses must be naturally aligned.
pub trait ConfigSpace {
    /// The size of the space in bytes: 256 (conventional) or 4096 (PCI Express, with the
    /// extended capabilities from 0x100).
    fn size(&self) -> u16;
    /// Reads the byte at `offset`.
    fn read_u8(&self, offset: u16) -> Result<u8, ConfigError>;
    /// Reads the word at `offset`.
    fn read_u16(&self, offset: u16) -> Result<u16, ConfigError>;
    /// Reads the dword at `offset`.
    fn read_u32(&self, offset: u16) -> Result<u32, ConfigError>;
    /// Writes the byte at `offset`.
    fn write_u8(&mut self, offset: u16, value: u8) -> Result<(), ConfigError>;
    /// Writes the word at `offset`.
    fn write_u16(&mut self, offset: u16, value: u16) -> Result<(), ConfigError>;
    /// Writes the dword at `offset`.
    fn write_u32(&mut self, offset: u16, value: u32) -> Result<(), ConfigError>;
}

/// A configuration space kept in a byte array (tests, simple simulators).
///
/// Every byte is read/write memory: there are no read-only or write-1-to-clear fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByteConfig<T> {
    bytes: T,
}

/// The largest configuration space (PCI Express, section 7.2.2).
pub const EXTENDED_SIZE: u16 = 4096;
/// The conventional configuration space.
pub const CONVENTIONAL_SIZE: u16 = 256;

impl<T: AsRef<[u8]>> ByteConfig<T> {
    /// Wraps `bytes`; at most [`EXTENDED_SIZE`] of them are used.
    pub fn new(bytes: T) -> Self {
        ByteConfig { bytes }
    }

    /// The underlying bytes.
    pub fn bytes(&self) -> &[u8] {
        let b = self.bytes.as_ref();
        &b[..b.len().min(usize::from(EXTENDED_SIZE))]
    }

    fn range(&self, offset: u16, width: u8) -> Result<core::ops::Range<usize>, ConfigError> {
        if offset % u16::from(width) != 0 {
            return Err(ConfigError::Misaligned { offset, width });
        }
        let start = usize::from(offset);
        let end = start + usize::from(width);
        if end > self.bytes().len() {
            return Err(ConfigError::OutOfRange {
                offset,
                width,
                size: self.bytes().len() as u16,
            });
        }
        Ok(start..end)
    }

    fn read<const N: usize>(&self, offset: u16) -> Result<[u8; N], ConfigError> {
        let r = self.range(offset, N as u8)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes()[r]);
        Ok(out)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ByteConfig<T> {
    /// The underlying bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let b = self.bytes.as_mut();
        let len = b.len().min(usize::from(EXTENDED_SIZE));
        &mut b[..len]
    }

    fn write<const N: usize>(&mut self, offset: u16, value: [u8; N]) -> Result<(), ConfigError> {
        let r = self.range(offset, N as u8)?;
        self.bytes_mut()[r].copy_from_slice(&value);
        Ok(())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ConfigSpace for ByteConfig<T> {
    fn size(&self) -> u16 {
        self.bytes().len() as u16
    }
    fn read_u8(&self, offset: u16) -> Result<u8, ConfigError> {
        self.read::<1>(offset).map(|b| b[0])
    }
    fn read_u16(&self, offset: u16) -> Result<u16, ConfigError> {
        self.read(offset).map(u16::from_le_bytes)
    }
    fn read_u32(&self, offset: u16) -> Result<u32, ConfigError> {
        self.read(offset).map(u32::from_le_bytes)
    }
    fn write_u8(&mut self, offset: u16, value: u8) -> Result<(), ConfigError> {
        self.write(offset, [value])
    }
    fn write_u16(&mut self, offset: u16, value: u16) -> Result<(), ConfigError> {
        self.write(offset, value.to_le_bytes())
    }
    fn write_u32(&mut self, offset: u16, value: u32) -> Result<(), ConfigError> {
        self.write(offset, value.to_le_bytes())
    }
}

/// Header registers and bits (PCI Express Base Specification 7.5.1.1).
pub mod header {
    /// Vendor ID (7.5.1.1.1), a word at 0x00; 0xFFFF reads back when no function answers.
    pub const VENDOR_ID: u16 = 0x00;
    /// Command register (7.5.1.1.3), a word at 0x04.
    pub const COMMAND: u16 = 0x04;
    /// Command bit 10, Interrupt Disable: the function may not assert INTx (7.5.1.1.3).
    pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
    /// Status register (7.5.1.1.4), a word at 0x06.
    pub const STATUS: u16 = 0x06;
    /// Status bit 4, Capabilities List: the Capabilities Pointer is valid (7.5.1.1.4).
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
    /// Capabilities Pointer (7.5.1.1.11), a byte at 0x34; bits 1:0 are reserved and must be
    /// masked off by software.
    pub const CAP_POINTER: u16 = 0x34;
    /// Interrupt Pin (7.5.1.1.13), a byte at 0x3D: 0 none, 1..=4 INTA..INTD.
    pub const INTERRUPT_PIN: u16 = 0x3D;
    /// The header's size: capabilities live at or above this offset (7.5.1.1).
    pub const HEADER_END: u16 = 0x40;
    /// The first extended capability (7.6.1).
    pub const EXTENDED_START: u16 = 0x100;
}

/// Sets or clears the Command register's Interrupt Disable bit (7.5.1.1.3), leaving the other
/// bits as they are. MSI and MSI-X set it when they take over; INTx needs it clear.
pub fn set_intx_disable<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    disable: bool,
) -> Result<(), ConfigError> {
    let command = cfg.read_u16(header::COMMAND)?;
    let new = match disable {
        true => command | header::COMMAND_INTX_DISABLE,
        false => command & !header::COMMAND_INTX_DISABLE,
    };
    if new != command {
        cfg.write_u16(header::COMMAND, new)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_endian_and_aligned() {
        let mut cfg = ByteConfig::new([0u8; 256]);
        cfg.write_u32(0x40, 0x1122_3344).unwrap();
        assert_eq!(&cfg.bytes()[0x40..0x44], &[0x44, 0x33, 0x22, 0x11]);
        assert_eq!(cfg.read_u16(0x42).unwrap(), 0x1122);
        assert_eq!(cfg.read_u8(0x41).unwrap(), 0x33);
        assert_eq!(
            cfg.read_u32(0x42),
            Err(ConfigError::Misaligned {
                offset: 0x42,
                width: 4
            })
        );
        assert_eq!(
            cfg.read_u32(0x100),
            Err(ConfigError::OutOfRange {
                offset: 0x100,
                width: 4,
                size: 256
            })
        );
        assert_eq!(cfg.size(), CONVENTIONAL_SIZE);
    }

    #[test]
    fn intx_disable_is_bit_10_of_the_command_register() {
        let mut cfg = ByteConfig::new([0u8; 256]);
        // Memory Space Enable and Bus Master Enable (bits 1 and 2) stay as they are.
        cfg.write_u16(header::COMMAND, 0x0006).unwrap();
        set_intx_disable(&mut cfg, true).unwrap();
        assert_eq!(&cfg.bytes()[4..6], &[0x06, 0x04]);
        set_intx_disable(&mut cfg, false).unwrap();
        assert_eq!(&cfg.bytes()[4..6], &[0x06, 0x00]);
    }
}
