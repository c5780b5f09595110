//! A guest that never returns or allocates without bound costs only its own request: it is
//! answered 504/500 and the runtime keeps serving everyone else.

mod support;

use support::server;

#[test]
fn runaway_and_memory_hungry_guests_leave_the_host_healthy() {
    let s = server("tests/fixtures/misbehaving.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--timeout-secs")
        .arg("1")
        .arg("--memory-limit-mib")
        .arg("32")
        .start();
    std::thread::scope(|scope| {
        let spinning = scope.spawn(|| s.get("/spin", &[]));
        // served while the runaway guest is still running
        assert_eq!(s.get("/health", &[]).status, 200);
        let spun = spinning.join().unwrap();
        assert_eq!((spun.status, spun.error_code().as_str()), (504, "timeout"));
    });
    let hog = s.get("/hog", &[]);
    assert_eq!(
        (hog.status, hog.error_code().as_str()),
        (500, "component_failed")
    );
    for _ in 0..3 {
        assert_eq!(s.get("/spin", &[]).status, 504);
        assert_eq!(s.get("/hog", &[]).status, 500);
    }
    assert_eq!(
        s.get("/health/ready", &[]).status,
        200,
        "the host is still healthy"
    );
}

#[test]
fn a_guest_computing_for_long_does_not_hold_up_its_threads_other_connections() {
    // One serving thread: the runaway guest and the health checks share its event loop.
    let s = server("tests/fixtures/misbehaving.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--threads")
        .arg("1")
        .arg("--timeout-secs")
        .arg("5")
        .start();
    std::thread::scope(|scope| {
        let spinning = scope.spawn(|| {
            let resp = s.get("/spin", &[]);
            (resp, std::time::Instant::now())
        });
        let mut answered = Vec::new();
        for _ in 0..10 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert_eq!(s.get("/health", &[]).status, 200);
            answered.push(std::time::Instant::now());
        }
        let (spun, spun_at) = spinning.join().unwrap();
        assert_eq!((spun.status, spun.error_code().as_str()), (504, "timeout"));
        // Had the guest kept the thread until its deadline, every health check would have
        // waited for it.
        assert!(
            answered.iter().all(|at| *at < spun_at),
            "health checks waited for the runaway guest: {:?} vs {:?}",
            answered,
            spun_at
        );
    });
}
