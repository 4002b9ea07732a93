//! The `genmsi` binary: exit statuses, JSON output, errors for bad files.

mod common;
use common::{genmsi, genmsi_json};

#[test]
fn run_json_is_one_object_with_the_counters() {
    let out = genmsi(&["run", "scenarios/ir-spoofing.toml", "--json", "--seed", "4"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in ["raised", "delivered", "blocked", "lost"] {
        assert!(v[key].is_u64(), "{key}");
    }
    assert_eq!(v["seed"], 4);
    assert_eq!(v["lost"], 0);
}

#[test]
fn a_failing_run_exits_1_and_a_bad_file_exits_2_with_the_line() {
    let dir = std::env::temp_dir().join(format!("genmsi-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spoof = dir.join("spoof.toml");
    std::fs::write(
        &spoof,
        "[machine]\ncpus = 4\nremapping = false\nsteps = 100\n[[device]]\nkind = \"nic\"\nname = \"a\"\nvectors = 2\n[[event]]\nat = 10\nkind = \"wrong-rid\"\ndevice = \"a\"\n",
    )
    .unwrap();
    let out = genmsi(&["run", spoof.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "without remapping the spoof gets through: the run fails"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("UNEXPECTED"));
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[machine]\ncpus = 4\n\n[[device]]\nkind = \"nic\"\nname = \"a\"\nvectors = 0\n",
    )
    .unwrap();
    let out = genmsi(&["run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4: device.vectors: must be at least 1"),
        "{err}"
    );
    // Freed vectors wait for their grace: the reuse scenario's late writes are stale, none is
    // handled by the other device (issue 20), and the run passes.
    let reuse = format!(
        "{}/../../scenarios/ims-reuse.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = genmsi(&["run", &reuse]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("stale: landed on a vector no irq owns: 18"),
        "{text}"
    );
    assert!(
        text.contains("result: ok (lost 0, misdelivered 0,"),
        "{text}"
    );
    let out = genmsi(&["run", "no/such/file.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no/such/file.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quiesce_flags_override_the_scenario() {
    let file = |n: &str| format!("{}/../../scenarios/{n}", env!("CARGO_MANIFEST_DIR"));
    let json = |args: &[&str]| {
        let out = genmsi(args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for key in [
            "misdelivered",
            "stale",
            "pending_at_events",
            "retriggered",
            "merged",
        ] {
            assert!(v[key].is_u64(), "JSON key {key}");
        }
        (out.status.code(), v)
    };
    let storm = file("vector-storm.toml");
    let (code, v) = json(&["run", &storm, "--json"]);
    assert_eq!((code, &v["quiesce"]), (Some(0), &true.into()));
    let (code, v) = json(&["run", &storm, "--json", "--no-quiesce"]);
    assert_eq!((code, &v["quiesce"]), (Some(0), &false.into()));
    assert_eq!((&v["lost"], &v["misdelivered"]), (&0.into(), &0.into()));
    // ims-reuse.toml says `quiesce = false`; --quiesce turns it on.
    let reuse = file("ims-reuse.toml");
    let (_, v) = json(&["run", &reuse, "--json"]);
    assert_eq!(v["quiesce"], false);
    let (code, v) = json(&["run", &reuse, "--json", "--quiesce"]);
    assert_eq!((code, &v["quiesce"]), (Some(0), &true.into()));
    assert_eq!(v["misdelivered"], 0);
    let out = genmsi(&["run", &reuse, "--quiesce", "--no-quiesce"]);
    assert_eq!(out.status.code(), Some(2), "the two flags conflict");
}

#[test]
fn help_lists_the_options() {
    let out = genmsi(&["run", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in ["--seed", "--json", "--quiesce", "--no-quiesce", "[FILE]"] {
        assert!(text.contains(opt), "{text}");
    }
}

#[test]
fn bench_vfio_grow_json_has_both_modes() {
    let out = genmsi(&["bench", "vfio-grow", "--vectors", "32", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["vectors"], 32);
    for mode in ["on_demand", "baseline"] {
        for key in ["ops", "seconds", "host_seconds", "lost"] {
            assert!(v[mode][key].is_number(), "{mode}.{key}");
        }
    }
    assert!(v["speedup"].is_number());
    assert!(v["host_speedup"].is_number());
    // One host operation per unmask (plus vector 0 at enable) against N^2.
    assert_eq!(v["on_demand"]["ops"], 33);
    assert_eq!(v["baseline"]["ops"], 32 * 32);
    assert_eq!(v["on_demand"]["lost"], 0);
    assert!(v["baseline"]["lost"].as_u64().unwrap() > 0);
}

#[test]
fn default_run_includes_the_vmm_comparison_and_is_deterministic() {
    let a = genmsi(&["run", "--json"]);
    assert_eq!(a.status.code(), Some(0));
    let b = genmsi(&["run", "--json"]);
    assert_eq!(a.stdout, b.stdout, "same seed, same JSON");
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(v["lost"], 0);
    assert_eq!(v["vmm"]["on_demand"]["lost"], 0);
    assert_eq!(v["vmm"]["on_demand"]["ops"], 65);
}

#[test]
fn bench_kvm_grow_json_has_the_three_strategies_or_says_kvm_is_missing() {
    let out = genmsi(&["bench", "kvm-grow", "--vectors", "16", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["vectors"], 16);
    if v["kvm"] == false {
        // One clear line, and nothing measured.
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("open /dev/kvm failed"), "{stderr}");
        assert!(v.get("on_demand").is_none());
        eprintln!("skipped: {stderr}");
        return;
    }
    assert_eq!(v["kvm"], true);
    for strategy in ["on_demand", "eager", "baseline"] {
        for key in [
            "routes_max",
            "routes_end",
            "routing_calls",
            "host_seconds",
            "fired",
            "counted",
            "lost",
        ] {
            assert!(v[strategy][key].is_number(), "{strategy}.{key}");
        }
        let s = &v[strategy];
        // Signed: an over-count shows as a negative loss (and fails the bench).
        let count = |key: &str| s[key].as_i64().unwrap();
        assert_eq!(count("lost"), count("fired") - count("counted"));
        for key in [
            "held_in_irr",
            "vectors_stalled",
            "other_arrivals",
            "host_errors",
        ] {
            assert_eq!(count(key), 0, "{strategy}.{key}");
        }
        let expected = match strategy {
            "baseline" => count("dropped_while_disabled"),
            _ => 0,
        };
        assert_eq!(count("lost"), expected, "{strategy}: {s}");
    }
    assert_eq!(v["eager"]["routes_max"], 16);
    assert_eq!(v["on_demand"]["routes_max"], v["on_demand"]["unmasked_max"]);
}

#[test]
fn bench_matrix_short_covers_every_shape_with_linux_spread() {
    let v = genmsi_json(&["bench", "matrix", "--cpus", "1024", "--short", "--json"]);
    assert_eq!(v["cpus"], 1024);
    let shapes = v["shapes"].as_array().unwrap();
    let names: Vec<&str> = shapes
        .iter()
        .map(|s| s["shape"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "machine",
            "node",
            "two-nodes",
            "single",
            "every-2nd",
            "every-3rd",
            "random-half",
            "smt-pair",
            "scattered-4",
            "node-firsts",
            "smt-node",
            "machine-1%-offline",
            // Random scattered masks either side of the inline-list and list/bitmap thresholds
            // at 1,024 CPUs, a new random 32-CPU mask per allocation, and managed vectors.
            "random-8",
            "random-9",
            "random-63",
            "random-64",
            "churn-32",
            "managed-node",
            "managed-random-32",
            "managed-machine"
        ]
    );
    let mask = |name: &str| {
        let s = shapes.iter().find(|s| s["shape"] == name).unwrap();
        (s["mask"].as_str().unwrap(), s["weight"].as_u64().unwrap())
    };
    assert_eq!(mask("random-63"), ("list", 63));
    assert_eq!(mask("random-64"), ("bitmap", 64));
    assert_eq!(mask("managed-machine"), ("range", 1024));
    for s in shapes {
        let managed = s["shape"].as_str().unwrap().starts_with("managed-");
        assert_eq!(s["managed"], managed, "{s}");
        for key in ["ours_ns", "linux_ns", "speedup"] {
            assert!(s[key].as_f64().unwrap() > 0.0, "{s}");
        }
        // The bench itself fails unless both pick the same CPU every time. Both spreads
        // must be there: a missing key fails (as Options, None <= None would pass).
        let spread = |key: &str| {
            s[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{key} missing or not a count: {s}"))
        };
        assert!(spread("ours_spread") <= spread("linux_spread"), "{s}");
    }
    assert!(v["min_speedup"].is_number() && v["machine_speedup"].is_number());
    assert!(v["managed_min_speedup"].is_number() && v["min_shape"].is_string());
    let out = genmsi(&["bench", "matrix", "--cpus", "0"]);
    assert_ne!(out.status.code(), Some(0), "0 CPUs is refused");
    // One shape alone: no machine-wide figure; an unknown name is refused with the list.
    let one = genmsi_json(&[
        "bench", "matrix", "--cpus", "256", "--short", "--shape", "smt-pair", "--json",
    ]);
    assert_eq!(one["shapes"].as_array().unwrap().len(), 1);
    assert!(one["machine_speedup"].is_null() && one["min_speedup"].is_number());
    let out = genmsi(&["bench", "matrix", "--shape", "nope"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node-firsts"));
}

#[test]
fn bench_scale_memory_per_irq_is_flat_on_the_x86_stack() {
    let small = genmsi_json(&["bench", "scale", "--cpus", "64", "--offline", "1", "--json"]);
    let big = genmsi_json(&[
        "bench",
        "scale",
        "--cpus",
        "8192",
        "--irqs",
        "30000",
        "--offline",
        "8",
        "--json",
    ]);
    let bytes = |v: &serde_json::Value| v["bytes_per_irq"].as_f64().unwrap();
    assert_eq!(small["irqs"], 63 * 150, "the default for a small machine");
    assert!(
        bytes(&big) <= 1.1 * bytes(&small),
        "{} bytes per irq on 8,192 CPUs, {} on 64",
        bytes(&big),
        bytes(&small)
    );
    let linux = big["linux_bytes_per_irq"].as_f64().unwrap();
    assert!(
        bytes(&big) * 50.0 <= linux,
        "{} vs Linux {linux}",
        bytes(&big)
    );
    assert_eq!(big["linux_bytes_per_irq_is_modelled"], true);
    assert!(big["seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_deliver_short_counts_every_interrupt() {
    // The bench fails unless the per-CPU counts add up to the interrupts delivered.
    let v = genmsi_json(&["bench", "deliver", "--threads", "2", "--short", "--json"]);
    assert_eq!(v["threads"], 2);
    assert!(v["ns_per_irq"].as_f64().unwrap() > 0.0);
    assert!(v["scaling"].as_f64().unwrap() > 0.0);
}
