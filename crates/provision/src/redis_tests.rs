//! The throwaway Redis against a real `redis-server`: a server that could not take its port
//! is never mistaken for one that did.

use super::redis::{Failure, Redis};

fn ping(port: u16) -> String {
    command(port, "PING")
}

#[test]
fn a_second_server_on_a_taken_port_is_refused_not_shared() {
    let first = Redis::start(&[]).expect("first server");
    assert_eq!(ping(first.port()), "+PONG\r\n");
    // Connecting to the port would succeed (the first server answers): that must not count.
    match Redis::start_on(first.port(), &[]) {
        Err(Failure::Exited(log)) => assert!(!log.is_empty(), "its log is kept for the report"),
        Err(other) => panic!("expected an exit, got {other}"),
        Ok(_) => panic!("a second server was taken for ready on a port it never bound"),
    }
}

#[test]
fn servers_started_at_once_are_each_their_own() {
    let servers: Vec<Redis> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| Redis::start(&[]))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic").expect("a server"))
            .collect()
    });
    let mut ports: Vec<u16> = servers.iter().map(Redis::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len(), "two fixtures share a server");
}

#[test]
fn a_restart_keeps_the_port_and_the_arguments() {
    let mut redis = Redis::start(&["--requirepass", "pw"]).expect("server");
    let port = redis.port();
    redis.restart().expect("restart");
    assert_eq!(redis.port(), port);
    assert!(
        ping(port).starts_with("-NOAUTH"),
        "the password still applies"
    );
}

fn command(port: u16, line: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.write_all(format!("{line}\r\n").as_bytes())
        .expect("write");
    let mut buf = [0u8; 256];
    let n = conn.read(&mut buf).expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A replica writes the data it synced to `dump.rdb` in its working directory, and every
/// server loads one it finds there: in a shared directory, the next "empty" server would
/// start with this test's keys.
#[test]
fn a_new_server_starts_empty_whatever_a_replica_saved_before() {
    let primary = Redis::start(&[]).expect("primary");
    let port = primary.port().to_string();
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &port]).expect("replica");
    assert_eq!(command(primary.port(), "SET leaked yes"), "+OK\r\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while command(replica.port(), "GET leaked") != "$3\r\nyes\r\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never synced"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(replica);
    drop(primary);
    let fresh = Redis::start(&[]).expect("a fresh server");
    assert_eq!(command(fresh.port(), "DBSIZE"), ":0\r\n");
}
