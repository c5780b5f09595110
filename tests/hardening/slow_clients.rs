//! Clients that hold the server's resources: headers or a body sent too slowly, and more
//! connections than the server keeps open. Each is cut off or made to wait, and the server
//! goes on serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{self, RawReply, Server};

fn connect(server: &Server) -> TcpStream {
    let conn = TcpStream::connect(server.base.trim_start_matches("http://")).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    conn
}

/// Everything the server sends until it closes the connection.
fn read_until_closed(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn headers_sent_too_slowly_are_cut_off() {
    let server = support::server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--header-read-timeout-secs")
        .arg("1")
        .start();
    let mut conn = connect(&server);
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("write");
    // Never finishes its headers: the server closes the connection (hyper may say 408 first).
    let answer = read_until_closed(&mut conn);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert_eq!(server.get("/health", &[]).status, 200);
}

#[test]
fn a_body_sent_too_slowly_is_a_408() {
    let server = support::server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--body-read-timeout-secs")
        .arg("1")
        .start();
    let mut conn = connect(&server);
    conn.write_all(
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"username\":",
    )
    .expect("write");
    let reply = RawReply::parse(&read_until_closed(&mut conn));
    assert_eq!(
        (reply.status, reply.error_code().as_deref()),
        (408, Some("request_timeout")),
        "{}",
        reply.raw
    );
    assert_eq!(server.get("/health", &[]).status, 200);
}

#[test]
fn connections_beyond_the_cap_wait_until_one_closes() {
    let server = support::server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--max-connections")
        .arg("2")
        .start();
    let held: Vec<TcpStream> = (0..2).map(|_| connect(&server)).collect();
    // Let the server accept both before the third arrives.
    std::thread::sleep(Duration::from_millis(300));
    let mut third = connect(&server);
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let early = third.read(&mut buf);
    assert!(
        early.is_err(),
        "answered beyond the cap: {:?}",
        early.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    );
    drop(held);
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let reply = RawReply::parse(&read_until_closed(&mut third));
    assert_eq!(reply.status, 200, "{}", reply.raw);
}
