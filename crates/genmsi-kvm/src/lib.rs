//! # genmsi-kvm: genmsi-vmm on real KVM
#![deny(missing_docs, missing_debug_implementations)]

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod function;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod guest;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod harness;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod memory;
