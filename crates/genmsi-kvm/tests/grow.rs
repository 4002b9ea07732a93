//! The kvm-grow benchmark on a real guest, small: skips, saying so, without `/dev/kvm`.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use genmsi_kvm::{kvm_grow, KvmGrowError};

#[test]
fn kvm_grow_on_a_real_guest() {
    let vectors: u32 = std::env::var("N")
        .map(|v| v.parse().unwrap())
        .unwrap_or(256);
    let report = match kvm_grow(vectors) {
        Ok(r) => r,
        Err(KvmGrowError::NoKvm(r, what, errno)) => {
            eprintln!("skipped: no usable /dev/kvm ({what}, errno {errno})");
            assert!(!r.kvm);
            return;
        }
        Err(KvmGrowError::Failed(e)) => panic!("kvm-grow failed: {e}"),
    };
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(report.kvm);
    let (on_demand, eager, baseline) = (
        report.on_demand.unwrap(),
        report.eager.unwrap(),
        report.baseline.unwrap(),
    );
    for s in [&on_demand, &eager, &baseline] {
        assert_eq!(s.unmasked_max, vectors);
        assert_eq!(s.host_errors, 0);
        assert!(s.fired > u64::from(vectors), "the device fired throughout");
        assert_eq!(s.lost, s.fired - s.counted);
    }
    assert_eq!(on_demand.lost, 0, "{on_demand:?}");
    assert_eq!(on_demand.routes_max, on_demand.unmasked_max);
    assert_eq!(eager.routes_max, vectors);
    assert_eq!(eager.lost, 0, "{eager:?}");
    // On demand: one routing call per unmask that needed a route, eager: one at enable.
    assert_eq!(on_demand.routing_calls, u64::from(vectors));
    assert_eq!(eager.routing_calls, 1);
    // The baseline re-enables for every new entry: two calls (disable, enable) each.
    assert!(baseline.routing_calls >= 2 * u64::from(vectors) - 2);
    assert_eq!(
        baseline.lost, baseline.dropped_while_disabled,
        "{baseline:?}"
    );
}
