//! Guest RAM: an anonymous shared mapping given to KVM as memory slot 0, and read by the
//! harness while the guest runs (only through atomics once the vCPU has started).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// Guest RAM at guest physical address 0.
#[derive(Debug)]
pub struct GuestMemory {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping lives as long as the value; the harness writes plain bytes only before
// the vCPU starts ([`GuestMemory::write`] takes `&mut self`), and afterwards every shared
// access goes through `AtomicU64`, which is sound to use from several threads (and alongside
// the guest's own locked instructions).
unsafe impl Send for GuestMemory {}
// SAFETY: see `Send`.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// `len` bytes of zeroed RAM (a multiple of the page size).
    pub fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous mapping at an address the kernel chooses: no existing memory
        // is affected; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(GuestMemory { base, len })
    }

    /// The host address of guest physical 0.
    pub fn host_address(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Zero length (never, for a mapping that exists).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `bytes` to guest physical `gpa` (before the guest runs).
    ///
    /// # Panics
    /// If the range is outside guest RAM (a bug in the harness's fixed layout).
    pub fn write(&mut self, gpa: u64, bytes: &[u8]) {
        let at = gpa as usize;
        assert!(at + bytes.len() <= self.len, "guest layout out of RAM");
        // SAFETY: the range is inside the mapping (checked above) and `&mut self` excludes any
        // other access from the harness; the guest is not running yet.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.as_ptr().add(at), bytes.len());
        }
    }

    /// The u64 at guest physical `gpa`, shared with the guest.
    ///
    /// # Panics
    /// If `gpa` is misaligned or outside guest RAM (a bug in the fixed layout).
    pub fn u64_at(&self, gpa: u64) -> &AtomicU64 {
        let at = gpa as usize;
        assert!(at % 8 == 0 && at + 8 <= self.len, "guest layout out of RAM");
        // SAFETY: aligned, inside the mapping, which outlives `&self`; AtomicU64 has the
        // layout of u64 and every concurrent access (harness or guest) is atomic.
        unsafe { &*self.base.as_ptr().add(at).cast::<AtomicU64>() }
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; KVM's VM (which references it)
        // is dropped before the memory by the harness's field order.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}
