//! From QEMU's PVH entry (32-bit protected mode, paging off) to Rust in long mode, for the
//! bootstrap processor and, through a real-mode trampoline, for the application processors.
//!
//! 1. The ELF carries a Xen PVH note (`XEN_ELFNOTE_PHYS32_ENTRY`, type 18) naming
//!    `pvh_start32`; QEMU's `-kernel` loader jumps there with `%ebx` = the `hvm_start_info`.
//! 2. `pvh_start32` identity-maps the first 4 GiB with 2 MiB pages (RAM and every MMIO window
//!    of q35: PCI BARs, IO-APIC, HPET, VT-d, LAPIC), enables SSE (the precompiled `core` uses
//!    it), PAE, long mode and paging, and calls `kernel_main(start_info)` on the boot stack.
//! 3. An application processor starts in real mode at the page the SIPI names. The BSP copies
//!    `ap_trampoline_start..ap_trampoline_end` there; it loads the boot GDT, enters protected
//!    mode and jumps to `ap_start32`, which enables long mode with the same page tables and
//!    calls `ap_main` on the stack the BSP left in `AP_BOOT_STACK`.

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4 * 4096
boot_page_tables_end:
    .balign 16
boot_stack:
    .skip 64 * 1024
boot_stack_top:

    .balign 16
boot_tss:
    .skip 104

    .section .data.boot, "aw"
    .balign 8
    .global boot_gdt
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00cf9a000000ffff
boot_gdt_tss:
    .quad 0
    .quad 0
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt
boot_idt_ptr:
    .word 0
    .quad 0

    .macro ENTER_LONG_MODE target
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $(1 << 8), %eax
    wrmsr
    movl %cr0, %eax
    andl $~(1 << 2), %eax
    orl $((1 << 31) | (1 << 1) | 1), %eax
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $\target
    .endm

    .macro LOAD_DATA_SEGMENTS
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    .endm

    /* A usable task register and a loaded IDT before any compiled code runs: VM entry
       requires a usable, busy TSS in TR (Intel SDM Vol. 3C, VM-entry checks on guest
       segment registers), and KVM emulates a guest whose state fails that check in its
       instruction emulator, which cannot run SSE. The descriptor's busy bit is cleared
       first because every application processor loads the same boot TSS, one at a time,
       until `cpu::init` gives it its own. The empty IDT turns any early exception into a
       triple fault. */
    .macro LOAD_BOOT_TASK
    andl $~(1 << 9), boot_gdt_tss + 4(%rip)
    movw $0x20, %ax
    ltr %ax
    lidt boot_idt_ptr(%rip)
    .endm

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    movl %ebx, %esi
    movl $boot_pml4, %edi
    xorl %eax, %eax
    movl $((boot_page_tables_end - boot_pml4) / 4), %ecx
    cld
    rep stosl
    movl $boot_pdpt, %eax
    orl $3, %eax
    movl %eax, boot_pml4
    movl $boot_pd, %eax
    orl $3, %eax
    movl $boot_pdpt, %edi
    movl $4, %ecx
1:
    movl %eax, (%edi)
    addl $4096, %eax
    addl $8, %edi
    loop 1b
    movl $boot_pd, %edi
    movl $0x83, %eax
    movl $2048, %ecx
2:
    movl %eax, (%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 2b
    movl $boot_tss, %eax
    movl %eax, %edx
    shll $16, %eax
    orl $103, %eax
    movl %eax, boot_gdt_tss
    movl %edx, %eax
    shrl $16, %eax
    andl $0xff, %eax
    andl $0xff000000, %edx
    orl %edx, %eax
    orl $0x8900, %eax
    movl %eax, boot_gdt_tss + 4
    ENTER_LONG_MODE bsp_start64

    .global ap_start32
ap_start32:
    LOAD_DATA_SEGMENTS
    ENTER_LONG_MODE ap_start64

    .code64
bsp_start64:
    LOAD_DATA_SEGMENTS
    LOAD_BOOT_TASK
    movabsq $boot_stack_top, %rsp
    movl %esi, %edi
    call kernel_main
3:
    hlt
    jmp 3b

ap_start64:
    LOAD_DATA_SEGMENTS
    LOAD_BOOT_TASK
    movq AP_BOOT_STACK(%rip), %rsp
    call ap_main
4:
    hlt
    jmp 4b

    .code16
    .global ap_trampoline_start
    .global ap_trampoline_end
ap_trampoline_start:
    cli
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (ap_trampoline_gdt_ptr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $ap_start32
    .balign 8
ap_trampoline_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
ap_trampoline_end:
    .code64
    .text
"#,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// The real-mode AP trampoline, to be copied to the page an SIPI names.
pub fn ap_trampoline() -> &'static [u8] {
    // SAFETY: both symbols are defined in the assembly above, in one section, start before end;
    // the bytes between them are code that nothing writes.
    unsafe {
        let start = core::ptr::addr_of!(ap_trampoline_start);
        let end = core::ptr::addr_of!(ap_trampoline_end);
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}
