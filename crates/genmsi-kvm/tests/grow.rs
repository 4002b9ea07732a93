//! The kvm-grow benchmark on a real guest, small: skips, saying so, only when `/dev/kvm`
//! cannot be opened.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use genmsi_kvm::{kvm_grow, KvmGrowError};

#[test]
fn kvm_grow_on_a_real_guest() {
    let vectors: u32 = std::env::var("N")
        .map(|v| v.parse().unwrap())
        .unwrap_or(256);
    let report = match kvm_grow(vectors) {
        Ok(r) => r,
        Err(KvmGrowError::NoKvm { what, errno }) => {
            eprintln!("skipped: {what} failed (errno {errno})");
            return;
        }
        Err(KvmGrowError::Failed(strategy, e)) => panic!("kvm-grow {strategy:?} failed: {e}"),
    };
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(report.kvm);
    let (on_demand, eager, baseline) = (
        report.on_demand.unwrap(),
        report.eager.unwrap(),
        report.baseline.unwrap(),
    );
    // On demand and eager: lost (signed: an over-count is negative), IRR, stalled vectors,
    // other arrivals and host errors all 0; the baseline loses exactly its disabled windows'
    // fires.
    assert_eq!(report.violations(), vec![], "{report:#?}");
    for s in [&on_demand, &eager, &baseline] {
        assert_eq!(s.unmasked_max, vectors);
        assert!(s.fired > u64::from(vectors), "the device fired throughout");
        assert_eq!(s.lost, s.fired as i64 - s.counted as i64);
    }
    // Routes: on demand exactly what the guest unmasked, eager every advertised entry from
    // enable, the baseline its block.
    assert_eq!(on_demand.routes_max, on_demand.unmasked_max);
    assert_eq!(eager.routes_max, vectors);
    assert_eq!(baseline.routes_max, vectors);
    // On demand: one routing call per entry's first unmask; eager: one at enable.
    assert_eq!(on_demand.routing_calls, u64::from(vectors));
    assert_eq!(eager.routing_calls, 1);
    // The baseline re-enables for every new entry: a call to disable, one to enable again.
    assert_eq!(baseline.routing_calls, 2 * u64::from(vectors) - 1);
    // Raises in the baseline's disabled windows are lost: the guest never counts them.
    assert!(baseline.dropped_while_disabled > 0, "{baseline:?}");
    // On demand and eager never disable the function.
    assert_eq!(
        on_demand.dropped_while_disabled + eager.dropped_while_disabled,
        0
    );
}
