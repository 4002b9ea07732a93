//! The kvm-grow benchmark: the guest's grow workload (see [`crate::guest`]) on a function of
//! `vectors` MSI-X entries, once per strategy, with the device model firing the announced
//! entries meanwhile ([`crate::device`]).
//!
//! Per strategy: routes the function held (most at once, at the end), `KVM_SET_GSI_ROUTING`
//! calls and their time, host time spent for the guest's unmasks, and interrupts fired by the
//! device and counted by the guest; lost is `fired - counted`, signed (an over-count is
//! negative). A device thread that panics fails the run.

use crate::device::{DeviceModel, DeviceReport};
use crate::guest::ctrl;
use crate::harness::{spawn, FunctionConfig, Harness, HarnessConfig, HarnessError};
use crate::{KvmGrowReport, StrategyReport};
use genmsi_vmm::Strategy;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the guest's workload may take before the run is abandoned: a minute, plus 0.5 ms
/// per entry squared (the baseline's work grows with the square of the entries).
fn workload_timeout(vectors: u32) -> Duration {
    Duration::from_secs(60) + Duration::from_micros(500) * vectors * vectors
}

/// Runs the workload once with `strategy`.
pub fn run(vectors: u32, strategy: Strategy) -> Result<StrategyReport, HarnessError> {
    let h = Harness::boot(&HarnessConfig {
        functions: vec![FunctionConfig {
            entries: vectors,
            budget: vectors,
            strategy,
        }],
        grow: true,
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let model = DeviceModel {
        triggers: h.triggers(0).clone(),
        events: h.events().clone(),
        memory: h.memory().clone(),
        function: h.function_handle(0),
        stop: stop.clone(),
    };
    let start = Instant::now();
    let device = spawn("genmsi-kvm-device", move || model.run())?;
    let done = h.wait_for("the grow workload", workload_timeout(vectors), |h| {
        h.events().done.load(Ordering::Acquire)
    });
    stop.store(true, Ordering::Release);
    let device = join_device(device);
    done?;
    let device = device?;
    let seconds = start.elapsed().as_secs_f64();
    let counted = h.counted();
    let other_arrivals = h.total() - counted;
    let pba_seen = h.ctrl(ctrl::PBA_SEEN).load(Ordering::Acquire);
    let (budget, work, live_max, errors) = {
        let f = h.function(0);
        let v = f.virt();
        (
            v.budget(),
            v.unmask_work(),
            v.live_max(),
            f.errors().total(),
        )
    };
    let routing = h.routes().lock().unwrap_or_else(|e| e.into_inner()).stats();
    let events = h.events().clone();
    h.stop()?;
    Ok(StrategyReport {
        held_in_irr: events.irr_at_exit.load(Ordering::Acquire),
        other_arrivals,
        routes_max: budget.max_in_use,
        routes_end: budget.in_use,
        unmasked_max: live_max,
        routing_calls: routing.calls,
        routing_seconds: routing.time.as_secs_f64(),
        host_seconds: work.host.as_secs_f64(),
        unmasks: work.unmasks,
        host_us_per_unmask: match work.unmasks {
            0 => 0.0,
            n => work.host.as_secs_f64() * 1e6 / n as f64,
        },
        fired: device.fired,
        counted,
        lost: device.fired as i64 - counted as i64,
        dropped_while_disabled: device.dropped,
        vectors_stalled: device.vectors_stalled,
        pba_seen,
        host_errors: errors,
        seconds,
    })
}

/// The device model's report; a device thread that panicked fired an unknown number, and
/// fails the run.
fn join_device(device: JoinHandle<DeviceReport>) -> Result<DeviceReport, HarnessError> {
    device.join().map_err(|_| HarnessError::Panicked {
        thread: "the device model",
    })
}

/// Runs the three strategies; an error names the strategy that failed.
pub fn kvm_grow(vectors: u32) -> Result<KvmGrowReport, (Strategy, HarnessError)> {
    let one = |s: Strategy| run(vectors, s).map(Some).map_err(|e| (s, e));
    Ok(KvmGrowReport {
        vectors,
        kvm: true,
        on_demand: one(Strategy::OnDemand)?,
        eager: one(Strategy::Eager)?,
        baseline: one(Strategy::Baseline)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_device_thread_fails_the_run() {
        let device = spawn("device", || -> DeviceReport { panic!("device model") }).unwrap();
        assert!(matches!(
            join_device(device),
            Err(HarnessError::Panicked { .. })
        ));
        let fine = spawn("device", DeviceReport::default).unwrap();
        assert_eq!(join_device(fine).unwrap(), DeviceReport::default());
    }
}
