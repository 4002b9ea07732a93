//! A VMM wiring a passed-through function's MSI-X to KVM, host resources on demand.
//!
//! What a VMM author copies: one routing table per VM ([`GsiRoutes`]), one [`KvmMsix`] backend
//! and one [`VirtMsix`] emulation per function, and every trapped guest access to the MSI-X
//! capability or BAR handed to the emulation. The guest here is scripted (the accesses a
//! guest driver makes); the interrupt goes through KVM's in-kernel irqchip for real and is
//! read back from the vCPU's local APIC (its IRR), as the guest would take it.
//!
//! 1. The guest programs entry 5 (address, data), clears its Mask Bit and sets MSI-X Enable:
//!    only entry 5 gets a GSI route and an irqfd.
//! 2. The device raises 5 (writes its eventfd): KVM injects the guest's vector.
//! 3. The guest masks 5 and the device raises it: the interrupt latches (PBA bit set), and
//!    is delivered once when the guest unmasks.
//!
//! Run (needs `/dev/kvm`): `cargo run -p genmsi-vmm --features kvm --example kvm_vmm`

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    vmm::run()
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {
    eprintln!("this example needs KVM on x86-64 Linux");
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod vmm {
    use genmsi_pci::{msix::Region, Bar};
    use genmsi_vmm::kvm::{GsiRoutes, KvmMsix};
    use genmsi_vmm::{MsiBackend, MsixLayout, Strategy, VirtMsix};
    use kvm_ioctls::{Kvm, VcpuFd};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// The guest's vector for entry 5.
    const VECTOR: u8 = 0x41;
    /// The local APIC's register page: Spurious Interrupt Vector (enable bit 8), IRR.
    const APIC_SVR: usize = 0xF0;
    const APIC_IRR: usize = 0x200;

    /// Software-enables the vCPU's local APIC: a disabled APIC drops fixed interrupts.
    fn enable_apic(vcpu: &VcpuFd) -> Result<(), Box<dyn std::error::Error>> {
        let mut lapic = vcpu.get_lapic()?;
        // SVR: spurious vector 0xFF (bits 7:0), APIC Software Enable (bit 8).
        lapic.regs[APIC_SVR] = 0xFFu8 as _;
        lapic.regs[APIC_SVR + 1] = (lapic.regs[APIC_SVR + 1] as u8 | 0x01) as _;
        vcpu.set_lapic(&lapic)?;
        Ok(())
    }

    /// The vector is pending in the vCPU's IRR (the guest would take it next).
    fn in_irr(vcpu: &VcpuFd, vector: u8) -> Result<bool, Box<dyn std::error::Error>> {
        let lapic = vcpu.get_lapic()?;
        let word = APIC_IRR + usize::from(vector / 32) * 0x10;
        let bytes: Vec<u8> = lapic.regs[word..word + 4]
            .iter()
            .map(|&b| b as u8)
            .collect();
        let irr = u32::from_le_bytes(bytes.try_into().unwrap());
        Ok(irr & (1 << (vector % 32)) != 0)
    }

    /// Clears the IRR bit as the guest's acceptance would (the test takes the interrupt).
    fn take(vcpu: &VcpuFd, vector: u8) -> Result<(), Box<dyn std::error::Error>> {
        let mut lapic = vcpu.get_lapic()?;
        let at = APIC_IRR + usize::from(vector / 32) * 0x10 + usize::from(vector % 32) / 8;
        lapic.regs[at] = ((lapic.regs[at] as u8) & !(1 << (vector % 8))) as _;
        vcpu.set_lapic(&lapic)?;
        Ok(())
    }

    /// Waits up to a second for the interrupt (irqfd injection runs in the kernel).
    fn arrives(vcpu: &VcpuFd, vector: u8) -> Result<bool, Box<dyn std::error::Error>> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            if in_irr(vcpu, vector)? {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(false)
    }

    pub fn run() -> Result<(), Box<dyn std::error::Error>> {
        let kvm = match Kvm::new() {
            Ok(kvm) => kvm,
            Err(e) => {
                eprintln!("/dev/kvm cannot be opened ({e}): nothing to show here");
                return Ok(());
            }
        };
        // The VM: the in-kernel irqchip (IO-APIC, PIC, local APICs) and one vCPU.
        let vm = Arc::new(kvm.create_vm()?);
        vm.create_irq_chip()?;
        let vcpu = vm.create_vcpu(0)?;
        enable_apic(&vcpu)?;

        // One routing table per VM, one backend and one emulation per function: 64 entries,
        // the table at 0 and the PBA at 0x800 of BAR 0, at most 16 routes for this function.
        let routes = GsiRoutes::new(vm.clone());
        let backend = KvmMsix::new(vm.clone(), routes.clone(), 64, 16)?;
        let device = backend.triggers();
        let layout = MsixLayout::new(64, Region::parse(0)?, Region::parse(0x800)?, 0)?;
        let mut msix = VirtMsix::new(layout, backend, Strategy::OnDemand);
        let bar = Bar::new(0);

        // 1. The guest driver programs entry 5 and enables MSI-X (the trapped accesses).
        msix.mmio_write(bar, 5 * 16, &0xFEE0_0000u32.to_le_bytes())?; // address: APIC id 0
        msix.mmio_write(bar, 5 * 16 + 4, &0u32.to_le_bytes())?;
        msix.mmio_write(bar, 5 * 16 + 8, &u32::from(VECTOR).to_le_bytes())?; // data: vector
        msix.mmio_write(bar, 5 * 16 + 12, &0u32.to_le_bytes())?; // clear the Mask Bit
        msix.config_write(3, &[0x80])?; // MSI-X Enable
        println!(
            "entry 5 unmasked: {} route(s) in the VM, entry 5 backed: {}, budget {:?}",
            routes.lock().unwrap().len(),
            msix.backend().is_backed(5),
            msix.budget()
        );

        // 2. The device raises 5: KVM injects the vector into the vCPU's local APIC.
        device.fire(5);
        let arrived = arrives(&vcpu, VECTOR)?;
        println!("device raised 5: vector {VECTOR:#x} in the IRR: {arrived}");
        assert!(arrived, "the raise reached the guest");
        take(&vcpu, VECTOR)?;

        // 3. Masked, the raise latches in the PBA and nothing is injected ...
        msix.mmio_write(bar, 5 * 16 + 12, &1u32.to_le_bytes())?;
        device.fire(5);
        std::thread::sleep(Duration::from_millis(20));
        let mut pba = [0u8; 8];
        msix.mmio_read(bar, 0x800, &mut pba)?;
        let (pba, held) = (u64::from_le_bytes(pba), !in_irr(&vcpu, VECTOR)?);
        println!("masked and raised: PBA {pba:#x}, held back: {held}");
        assert!(
            pba == 1 << 5 && held,
            "a masked entry latches, nothing injected"
        );
        // ... and the unmask delivers it once.
        msix.mmio_write(bar, 5 * 16 + 12, &0u32.to_le_bytes())?;
        let arrived = arrives(&vcpu, VECTOR)?;
        println!("unmasked: in the IRR: {arrived}");
        assert!(arrived, "the latched interrupt is delivered at the unmask");

        let stats = routes.lock().unwrap().stats();
        println!("KVM_SET_GSI_ROUTING calls: {}", stats.calls);
        Ok(())
    }
}
