//! The guest: a small x86-64 program of the project's own, entered directly in 64-bit mode
//! (the VMM sets up paging, the GDT, CR0/CR4/EFER), written in assembly so that its bytes are
//! position independent and copied into guest memory as they are.
//!
//! What it does, in order:
//!
//! 1. Enables its local APIC (spurious vector register bit 8) and builds an IDT: vectors 0..31
//!    report an exception on [`port::FAULT`] and halt; every other vector `v` counts one
//!    arrival in `COUNTS[v]` (a locked increment in memory the harness reads) and writes EOI.
//! 2. Scans bus 0 through the configuration ports 0xCF8/0xCFC for the first function with an
//!    MSI-X capability (ID 0x11), reads Table Size, the Table and PBA BIR/offsets and their BAR,
//!    and sets Memory Space and Bus Master Enable.
//! 3. Programs every entry (address 0xFEE00000: APIC 0, fixed, edge; data: vector
//!    `0x30 + i % 192`), leaving them masked, then sets MSI-X Enable and enables interrupts.
//! 4. If the harness asked for the grow workload ([`ctrl::MODE`] = 1): unmasks the entries one
//!    by one; after each, it writes the entry to the device's doorbell ([`DOORBELL`] in BAR0) (the device may fire it
//!    from now on) and waits for one device round ([`ctrl::ROUNDS`]). Every 16th entry from 8
//!    it also masks entry `i - 8`, waits two rounds, reads that entry's PBA bit (counting set
//!    bits in [`ctrl::PBA_SEEN`]) and unmasks it. Then it rings [`port::DONE`].
//! 5. Serves commands from the harness ([`ctrl::CMD`]: mask, unmask, set data, read a PBA
//!    bit), each done with real table or PBA accesses, until [`ctrl::STOP`]; then it writes
//!    [`port::EXIT`].

use core::arch::global_asm;

/// Guest physical layout.
pub mod layout {
    /// The 4-level page tables: PML4, PDPT, then four page directories (0..4 GiB, 2 MiB pages).
    pub const PML4: u64 = 0x1000;
    /// The page directory pointer table.
    pub const PDPT: u64 = 0x2000;
    /// The first of the four page directories.
    pub const PD: u64 = 0x3000;
    /// The GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18).
    pub const GDT: u64 = 0x7000;
    /// Arrivals per vector: 256 u64 counters.
    pub const COUNTS: u64 = 0x8000;
    /// The control block ([`super::ctrl`]).
    pub const CTRL: u64 = 0x9000;
    /// The IDT the guest builds (256 gates of 16 bytes).
    pub const IDT: u64 = 0xA000;
    /// The TSS the task register names.
    pub const TSS: u64 = 0xB000;
    /// Where the guest's code is copied and entered.
    pub const CODE: u64 = 0x10000;
    /// The initial stack pointer.
    pub const STACK_TOP: u64 = 0x80000;
    /// Guest RAM: one slot at 0.
    pub const RAM: u64 = 0x10_0000;
}

/// Offsets in the control block (u64 fields).
pub mod ctrl {
    /// Harness to guest: 1 runs the grow workload before serving commands.
    pub const MODE: u64 = 0x00;
    /// Device to guest: rounds the device model completed.
    pub const ROUNDS: u64 = 0x08;
    /// Harness to guest: finish.
    pub const STOP: u64 = 0x10;
    /// Guest to harness: PBA bits found set on entries masked while they fired.
    pub const PBA_SEEN: u64 = 0x18;
    /// Harness to guest: a command (see [`super::Command`]); the guest writes 0 when done.
    pub const CMD: u64 = 0x20;
    /// The command's entry.
    pub const ARG: u64 = 0x28;
    /// The command's value (set data).
    pub const VALUE: u64 = 0x30;
    /// Guest to harness: a command's result (a PBA bit).
    pub const RESULT: u64 = 0x38;
    /// Guest to harness: the function's entries (Table Size + 1), once found.
    pub const ENTRIES: u64 = 0x40;
}

/// I/O ports the guest writes to the harness.
pub mod port {
    /// Configuration address (PCI local bus 3.2.2.3.2).
    pub const CONFIG_ADDRESS: u16 = 0xCF8;
    /// Configuration data, 4 bytes.
    pub const CONFIG_DATA: u16 = 0xCFC;
    /// The grow workload is done.
    pub const DONE: u16 = 0x514;
    /// The guest has finished.
    pub const EXIT: u16 = 0x518;
    /// An exception (dword: its vector), or 0x100: no MSI-X function found.
    pub const FAULT: u16 = 0x51C;
}

/// A command the harness gives the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Command {
    /// Set the entry's Mask Bit.
    Mask = 1,
    /// Clear it.
    Unmask = 2,
    /// Write the entry's Message Data (the entry stays as it is, live or not).
    SetData = 3,
    /// Read the entry's PBA bit into [`ctrl::RESULT`].
    ReadPending = 4,
}

/// The device's queue doorbell in BAR0 (the table's BAR, the table at offset 0): writing entry
/// `i` there tells the device it may fire entry `i` from now on.
pub const DOORBELL: u64 = 0xF000;

/// The first vector the guest gives its entries, and how many it cycles through.
pub const FIRST_VECTOR: u32 = 0x30;
/// Vectors the guest cycles its entries through (0x30..0xF0).
pub const VECTORS: u32 = 192;

/// The vector the guest programs in entry `index`.
pub const fn vector_of(index: u32) -> u32 {
    FIRST_VECTOR + index % VECTORS
}

global_asm!(
    ".pushsection .text.genmsi_guest, \"ax\"",
    ".balign 4096",
    ".global genmsi_guest_start",
    "genmsi_guest_start:",
    // 1. Local APIC on, IDT.
    "mov eax, 0xFEE000F0",
    "mov dword ptr [rax], 0x1FF",
    "lea rsi, [rip + genmsi_guest_stubs]",
    "mov edi, {idt}",
    "xor ecx, ecx",
    "2:",
    "mov rax, rsi",
    "mov edx, ecx",
    "shl edx, 5",
    "add rax, rdx",
    "mov edx, eax",
    "and edx, 0xFFFF",
    "or edx, 0x00080000",
    "mov dword ptr [rdi], edx",
    "mov edx, eax",
    "and edx, 0xFFFF0000",
    "or edx, 0x8E00",
    "mov dword ptr [rdi + 4], edx",
    "shr rax, 32",
    "mov dword ptr [rdi + 8], eax",
    "mov dword ptr [rdi + 12], 0",
    "add rdi, 16",
    "inc ecx",
    "cmp ecx, 256",
    "jne 2b",
    "sub rsp, 16",
    "mov word ptr [rsp], 4095",
    "mov qword ptr [rsp + 2], {idt}",
    "lidt [rsp]",
    "add rsp, 16",
    // 2. Find the first function with MSI-X on bus 0: r12 device, r13 capability.
    "xor r12d, r12d",
    "3:",
    "mov edi, r12d",
    "xor esi, esi",
    "call genmsi_guest_cfg_read",
    "cmp eax, 0xFFFFFFFF",
    "je 5f",
    "mov edi, r12d",
    "mov esi, 4",
    "call genmsi_guest_cfg_read",
    "bt eax, 20",
    "jnc 5f",
    "mov edi, r12d",
    "mov esi, 0x34",
    "call genmsi_guest_cfg_read",
    "movzx r13d, al",
    "4:",
    "and r13d, 0xFC",
    "test r13d, r13d",
    "jz 5f",
    "mov edi, r12d",
    "mov esi, r13d",
    "call genmsi_guest_cfg_read",
    "cmp al, 0x11",
    "je 6f",
    "shr eax, 8",
    "movzx r13d, al",
    "jmp 4b",
    "5:",
    "inc r12d",
    "cmp r12d, 32",
    "jne 3b",
    "mov dx, {fault}",
    "mov eax, 0x100",
    "out dx, eax",
    "hlt",
    "6:",
    // Table Size + 1 -> r14.
    "shr eax, 16",
    "and eax, 0x7FF",
    "inc eax",
    "mov r14d, eax",
    "mov qword ptr [{ctrl} + {entries}], r14",
    // Table: BIR and offset at cap + 4 -> r15 = BAR + offset.
    "mov edi, r12d",
    "lea esi, [r13 + 4]",
    "call genmsi_guest_bar_region",
    "mov r15, rax",
    // PBA at cap + 8 -> rbp.
    "mov edi, r12d",
    "lea esi, [r13 + 8]",
    "call genmsi_guest_bar_region",
    "mov rbp, rax",
    // Command register: Memory Space and Bus Master Enable.
    "mov edi, r12d",
    "mov esi, 4",
    "call genmsi_guest_cfg_address",
    "mov dx, {cfg_data}",
    "mov ax, 6",
    "out dx, ax",
    // 3. Program every entry, masked.
    "xor ecx, ecx",
    "7:",
    "mov rdi, rcx",
    "shl rdi, 4",
    "add rdi, r15",
    "mov dword ptr [rdi], 0xFEE00000",
    "mov dword ptr [rdi + 4], 0",
    "mov eax, ecx",
    "xor edx, edx",
    "mov r8d, {vectors}",
    "div r8d",
    "add edx, {first_vector}",
    "mov dword ptr [rdi + 8], edx",
    "inc ecx",
    "cmp ecx, r14d",
    "jne 7b",
    // MSI-X Enable, Function Mask clear: the control word at cap + 2.
    "mov edi, r12d",
    "mov esi, r13d",
    "call genmsi_guest_cfg_address",
    "mov dx, {cfg_data} + 2",
    "mov ax, 0x8000",
    "out dx, ax",
    "sti",
    // 4. The grow workload.
    "cmp qword ptr [{ctrl} + {mode}], 0",
    "je 20f",
    "xor ebx, ebx",
    "8:",
    "mov rdi, rbx",
    "call genmsi_guest_unmask",
    "mov dword ptr [r15 + {doorbell}], ebx",
    "mov eax, ebx",
    "and eax, 15",
    "cmp eax, 8",
    "jne 9f",
    "mov r9, rbx",
    "sub r9, 8",
    "mov rdi, r9",
    "call genmsi_guest_mask",
    "call genmsi_guest_wait_round",
    "call genmsi_guest_wait_round",
    "mov rdi, r9",
    "call genmsi_guest_pending",
    "test eax, eax",
    "jz 12f",
    "lock inc qword ptr [{ctrl} + {pba_seen}]",
    "12:",
    "mov rdi, r9",
    "call genmsi_guest_unmask",
    "9:",
    "call genmsi_guest_wait_round",
    "inc ebx",
    "cmp ebx, r14d",
    "jne 8b",
    "mov dx, {done}",
    "out dx, eax",
    // 5. Commands until stopped.
    "20:",
    "pause",
    "cmp qword ptr [{ctrl} + {stop}], 0",
    "jne 29f",
    "mov rax, qword ptr [{ctrl} + {cmd}]",
    "test rax, rax",
    "jz 20b",
    "mov rdi, qword ptr [{ctrl} + {arg}]",
    "cmp rax, 1",
    "jne 21f",
    "call genmsi_guest_mask",
    "jmp 28f",
    "21:",
    "cmp rax, 2",
    "jne 22f",
    "call genmsi_guest_unmask",
    "jmp 28f",
    "22:",
    "cmp rax, 3",
    "jne 23f",
    "shl rdi, 4",
    "add rdi, r15",
    "mov eax, dword ptr [{ctrl} + {value}]",
    "mov dword ptr [rdi + 8], eax",
    "jmp 28f",
    "23:",
    "call genmsi_guest_pending",
    "mov qword ptr [{ctrl} + {result}], rax",
    "28:",
    "mov qword ptr [{ctrl} + {cmd}], 0",
    "jmp 20b",
    "29:",
    "mov dx, {exit}",
    "out dx, eax",
    "hlt",
    "jmp 29b",
    // Helpers. cfg_address: edi device, esi offset -> CONFIG_ADDRESS (bus 0, function 0).
    "genmsi_guest_cfg_address:",
    "mov eax, edi",
    "shl eax, 11",
    "mov edx, esi",
    "and edx, 0xFC",
    "or eax, edx",
    "or eax, 0x80000000",
    "mov dx, {cfg_address}",
    "out dx, eax",
    "ret",
    "genmsi_guest_cfg_read:",
    "call genmsi_guest_cfg_address",
    "mov dx, {cfg_data}",
    "in eax, dx",
    "ret",
    // bar_region: the register at esi (BIR 2:0, offset) of device edi -> rax = BAR + offset.
    "genmsi_guest_bar_region:",
    "push rbx",
    "push rdi",
    "call genmsi_guest_cfg_read",
    "mov ebx, eax",
    "pop rdi",
    "mov esi, ebx",
    "and esi, 7",
    "shl esi, 2",
    "add esi, 0x10",
    "call genmsi_guest_cfg_read",
    "and eax, 0xFFFFFFF0",
    "and ebx, 0xFFFFFFF8",
    "add eax, ebx",
    "pop rbx",
    "ret",
    // mask / unmask entry rdi: its Vector Control dword.
    "genmsi_guest_mask:",
    "shl rdi, 4",
    "add rdi, r15",
    "mov dword ptr [rdi + 12], 1",
    "ret",
    "genmsi_guest_unmask:",
    "shl rdi, 4",
    "add rdi, r15",
    "mov dword ptr [rdi + 12], 0",
    "ret",
    // pending: the PBA bit of entry rdi -> rax (a qword read).
    "genmsi_guest_pending:",
    "mov rax, rdi",
    "shr rax, 6",
    "mov rax, qword ptr [rbp + rax * 8]",
    "mov rcx, rdi",
    "shr rax, cl",
    "and eax, 1",
    "ret",
    "genmsi_guest_wait_round:",
    "mov rax, qword ptr [{ctrl} + {rounds}]",
    "13:",
    "pause",
    "cmp qword ptr [{ctrl} + {rounds}], rax",
    "je 13b",
    "ret",
    // The interrupt stubs, 32 bytes each.
    ".balign 32",
    "genmsi_guest_stubs:",
    ".set genmsi_guest_vec, 0",
    ".rept 256",
    ".balign 32",
    ".if genmsi_guest_vec < 32",
    "mov dx, {fault}",
    "lea eax, [genmsi_guest_vec]",
    "out dx, eax",
    "hlt",
    ".else",
    "push rax",
    "lock inc qword ptr [{counts} + 8 * genmsi_guest_vec]",
    "mov eax, 0xFEE000B0",
    "mov dword ptr [rax], 0",
    "pop rax",
    "iretq",
    ".endif",
    ".set genmsi_guest_vec, genmsi_guest_vec + 1",
    ".endr",
    ".global genmsi_guest_end",
    "genmsi_guest_end:",
    ".popsection",
    idt = const layout::IDT,
    ctrl = const layout::CTRL,
    counts = const layout::COUNTS,
    entries = const ctrl::ENTRIES,
    mode = const ctrl::MODE,
    rounds = const ctrl::ROUNDS,
    stop = const ctrl::STOP,
    pba_seen = const ctrl::PBA_SEEN,
    cmd = const ctrl::CMD,
    arg = const ctrl::ARG,
    value = const ctrl::VALUE,
    result = const ctrl::RESULT,
    fault = const port::FAULT,
    doorbell = const DOORBELL,
    done = const port::DONE,
    exit = const port::EXIT,
    cfg_address = const port::CONFIG_ADDRESS,
    cfg_data = const port::CONFIG_DATA,
    vectors = const VECTORS,
    first_vector = const FIRST_VECTOR,
);

extern "C" {
    static genmsi_guest_start: u8;
    static genmsi_guest_end: u8;
}

/// The guest's code, as it is copied to [`layout::CODE`].
pub fn code() -> &'static [u8] {
    let start = &raw const genmsi_guest_start;
    let end = &raw const genmsi_guest_end;
    let len = end as usize - start as usize;
    // SAFETY: both symbols are labels of the same section of this binary, start before end;
    // the bytes between them are the assembled guest code, mapped readable for the life of
    // the process and never written.
    unsafe { core::slice::from_raw_parts(start, len) }
}
