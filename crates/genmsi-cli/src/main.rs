//! The `genmsi` command.

mod bench;

use clap::{Parser, Subcommand};
use genmsi::soft::{MemStore, SoftRemap, SoftRoot};
use genmsi::{AllocOpts, CpuMask, DeviceMeta, IrqSystem, SlotId, StoreCaps, SystemConfig};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "genmsi",
    version,
    about = "Generic message-signalled interrupts: run the model"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the core walk-through on a software machine (the default).
    Run,
    /// Run a benchmark.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => match run() {
            Ok(0) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("genmsi: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => bench::run(args),
    }
}

/// A device raises `index` of its store: the message goes through the remap table and the root.
fn raise(
    sys: &IrqSystem,
    table: &[std::sync::atomic::AtomicU64],
    dev: genmsi::DeviceId,
    index: u32,
) -> bool {
    let msg = sys
        .with_store::<MemStore, _>(dev, SlotId::Default, |s| s.raise(index))
        .ok()
        .flatten();
    let Some(msg) = msg else { return false };
    let msg = SoftRemap::translate(table, &msg).unwrap_or(msg);
    SoftRoot::decode(&msg)
        .is_some_and(|(irq, cpu)| sys.handle(irq, cpu) == genmsi::Delivery::Handled)
}

fn run() -> Result<u64, genmsi::Error> {
    const CPUS: u32 = 8;
    let sys: IrqSystem = IrqSystem::new(SystemConfig::new(CPUS, 1 << 16));
    let root = sys.add_domain(Box::new(SoftRoot::new(CPUS, 200)), None)?;
    let remap = SoftRemap::new(1024);
    let table = remap.table();
    let remap = sys.add_domain(Box::new(remap), Some(root))?;
    let nic = sys.add_device(
        "nic",
        DeviceMeta {
            requester_id: Some(0x0100),
        },
    );
    let caps = StoreCaps {
        write_masked: true,
        any_index: false,
        ..StoreCaps::dynamic(16)
    };
    sys.create_device_domain(nic, SlotId::Default, Box::new(MemStore::new(caps)), remap)?;
    let ims = sys.add_device(
        "accelerator",
        DeviceMeta {
            requester_id: Some(0x0200),
        },
    );
    sys.create_device_domain(
        ims,
        SlotId::Secondary,
        Box::new(MemStore::new(StoreCaps::dynamic(2048))),
        remap,
    )?;

    println!("genmsi core walk-through: {CPUS} CPUs, soft root <- soft remap <- device stores");
    let opts = AllocOpts::default();
    let irqs = sys.alloc_range(nic, SlotId::Default, 0, 4, &opts)?;
    println!(
        "nic: allocated indices 0..4 -> irqs {:?}",
        irqs.iter().map(|i| i.0).collect::<Vec<_>>()
    );
    let (mut raised, mut delivered) = (0u64, 0u64);
    let mut traffic = |n: u32, indices: &[u32]| {
        for _ in 0..n {
            for &i in indices {
                raised += 1;
                delivered += u64::from(raise(&sys, &table, nic, i));
            }
        }
    };
    traffic(100, &[0, 1, 2, 3]);
    let irq7 = sys.alloc_at(nic, SlotId::Default, 7, &opts)?;
    println!(
        "nic: allocated index 7 after enable -> irq {} (indices 0..4 untouched)",
        irq7.0
    );
    traffic(100, &[0, 1, 2, 3, 7]);
    sys.set_affinity(irqs[0], &CpuMask::single(5))?;
    println!("nic: irq {} moved to CPU 5", irqs[0].0);
    traffic(100, &[0, 1, 2, 3, 7]);
    sys.free_index(nic, SlotId::Default, 7)?;
    println!("nic: freed index 7");
    traffic(100, &[0, 1, 2, 3]);
    let mut queues = Vec::new();
    for q in 0..512u64 {
        queues.push(
            sys.alloc_any(
                ims,
                SlotId::Secondary,
                &AllocOpts {
                    cookie: Some(q),
                    ..opts.clone()
                },
            )?
            .0,
        );
    }
    for &i in queues.iter().step_by(2) {
        sys.free_index(ims, SlotId::Secondary, i)?;
    }
    println!("accelerator: 512 IMS queues allocated at any free index, 256 freed again");
    let refused = sys.alloc_at(nic, SlotId::Default, 2, &opts).unwrap_err();
    println!("nic: allocating index 2 again is refused: {refused}");
    let stats = sys.stats();
    println!(
        "irqs allocated {} active {}; interrupts raised {raised} delivered {delivered} lost {}",
        stats.irqs_allocated,
        stats.irqs_active,
        raised - delivered
    );
    for cpu in 0..CPUS {
        println!("  cpu {cpu}: {} interrupts", sys.table().cpu_count(cpu));
    }
    Ok(raised - delivered)
}
