//! The baseline (disable, free all, re-enable with more) and the side-by-side benchmark.

mod common;

use common::*;
use genmsi_vmm::bench::{self, vfio_grow_with, GrowConfig};
use genmsi_vmm::{Error, Injection, Mode, PassthroughConfig};

fn baseline() -> Guest {
    Guest::new(PassthroughConfig {
        record: true,
        ..PassthroughConfig::new(Mode::Baseline)
    })
}

#[test]
fn baseline_grows_by_disabling_freeing_all_and_re_enabling() {
    let mut g = baseline();
    g.control(true, false).unwrap();
    assert_eq!(g.host_indices(), [0]);
    g.unmask(0).unwrap();
    assert_eq!(g.vmm.host().ops(), 1, "entry 0 had its vector from enable");
    g.unmask(3).unwrap();
    // 1 freed, 4 allocated: every vector is new.
    assert_eq!(g.vmm.host().ops(), 1 + 1 + 4);
    assert_eq!(g.host_indices(), [0, 1, 2, 3]);
    assert!(g.vmm.host().msix_enabled());
    g.unmask(2).unwrap();
    assert_eq!(g.vmm.host().ops(), 6, "below the count: nothing to do");
    for i in [0, 2, 3] {
        assert_eq!(g.vmm.device_raise(i).unwrap(), Some(Injection::Injected));
    }
    assert_eq!(g.vmm.device_raise(1).unwrap(), Some(Injection::Latched));
    let stats = g.vmm.unmask_stats();
    assert_eq!((stats.unmasks, stats.touched, stats.max_touched), (3, 5, 5));
    assert_eq!(g.vmm.counters().lost, 0, "no traffic during the windows");
    assert_eq!(
        g.vmm.shrink(),
        Err(Error::NotInMode {
            mode: Mode::Baseline
        })
    );
}

#[test]
fn baseline_loses_what_the_device_raises_while_msix_is_disabled() {
    let mut g = baseline();
    g.control(true, false).unwrap();
    g.unmask(0).unwrap();
    g.unmask(1).unwrap();
    g.vmm.set_traffic(vec![0, 1]);
    g.vmm.device_round().unwrap();
    assert_eq!(g.vmm.counters().injected, 2);
    // Growing to 8 frees 2 vectors: one device round falls in the window, both dropped.
    g.unmask(7).unwrap();
    let c = g.vmm.counters();
    assert_eq!((c.raised, c.injected, c.lost), (4, 2, 2));
    assert!(g.balanced());
    // Nothing latched them: after re-enable the PBAs are empty.
    assert_eq!(g.pba(), 0);
}

#[test]
fn baseline_enable_takes_the_highest_live_entry_at_once() {
    let mut g = baseline();
    g.unmask(6).unwrap();
    g.unmask(2).unwrap();
    g.control(true, true).unwrap();
    assert_eq!(g.host_indices(), [0], "Function Mask: nothing live");
    g.control(true, false).unwrap();
    assert_eq!(g.host_indices(), (0..7).collect::<Vec<_>>());
    assert_eq!(g.vmm.unmask_stats().unmasks, 1);
}

#[test]
fn the_benchmark_shows_linear_on_demand_and_quadratic_baseline_work() {
    let mut config = GrowConfig::new(48);
    config.machine.cpus = 4;
    let r = vfio_grow_with(config).unwrap();
    assert_eq!(r.vectors, 48);
    assert_eq!(
        r.on_demand.ops, 49,
        "vector 0 at enable, then one per unmask"
    );
    assert_eq!(r.on_demand.lost, 0);
    assert_eq!(r.on_demand.touched_per_unmask, 1.0);
    assert_eq!(r.baseline.ops, 48 * 48, "sum of 2i + 1, plus vector 0");
    assert!(r.baseline.lost > 0);
    assert_eq!(r.on_demand.raised, 48 * 49 / 2, "one round per unmask");
    assert!(
        r.baseline.raised > r.on_demand.raised,
        "plus the rounds in the windows"
    );
    let json = serde_json::to_value(r).unwrap();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(
        keys(&json),
        [
            "baseline",
            "host_speedup",
            "on_demand",
            "speedup",
            "vectors"
        ]
    );
    for mode in ["on_demand", "baseline"] {
        let k = keys(&json[mode]);
        assert!(json[mode]["host_seconds"].as_f64() <= json[mode]["seconds"].as_f64());
        assert!(json[mode]["host_seconds"].as_f64() > Some(0.0));
        for key in [
            "ops",
            "seconds",
            "host_seconds",
            "lost",
            "touched_per_unmask",
        ] {
            assert!(k.iter().any(|x| x == key), "{mode}.{key}");
        }
    }
    assert!(bench::vfio_grow(0).is_err());
    assert!(bench::vfio_grow(2049).is_err());
}
