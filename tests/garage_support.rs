//! The test support for real Garage (S3) and nginx works: a bucket on the shared Garage takes,
//! lists and returns objects; a private Garage survives a stop and restart; nginx spreads
//! requests round-robin over its upstreams and hides `/internal/`.
//!
//! Garage tests are skipped when no `garage` binary is found, except under CI.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use support::{garage, nginx::Nginx};

#[test]
fn shared_garage_stores_lists_and_returns_objects() {
    if !garage::available() {
        return;
    }
    let g = garage::instance();
    assert!(g.endpoint.starts_with("http://127.0.0.1:"), "{}", g.endpoint);
    assert_eq!(g.region, "garage");
    let bucket = g.create_bucket();
    assert_ne!(bucket, g.create_bucket(), "buckets are fresh each call");
    assert!(g.list_keys(&bucket, "").is_empty());

    g.put_object(&bucket, "artifact/ab/cdef", b"hello garage");
    g.put_object(&bucket, "artifact/12/3 4+5", &[0u8, 1, 2, 255]);
    g.put_object(&bucket, "other/x", b"");
    assert_eq!(
        g.list_keys(&bucket, "artifact/"),
        vec![("artifact/12/3 4+5".to_string(), 4), ("artifact/ab/cdef".to_string(), 12)]
    );
    assert_eq!(g.list_keys(&bucket, "").len(), 3);
    assert_eq!(g.get_object(&bucket, "artifact/ab/cdef"), b"hello garage");
    assert_eq!(g.get_object(&bucket, "artifact/12/3 4+5"), [0u8, 1, 2, 255]);
    g.delete_object(&bucket, "other/x");
    assert_eq!(g.try_get_object(&bucket, "other/x"), None);

    // The same server from a second call, and the pulpish settings for it.
    assert!(std::ptr::eq(g, garage::instance()));
    let mut config = pulpish_server::Config::for_data_dir("/nonexistent");
    g.apply_to(&mut config, &bucket);
    assert_eq!(config.storage.kind, pulpish_server::config::StorageKind::S3);
    assert_eq!(config.storage.s3_endpoint.as_deref(), Some(g.endpoint.as_str()));
    assert_eq!(config.storage.s3_bucket.as_deref(), Some(bucket.as_str()));
    assert_eq!(config.storage.s3_region, "garage");
    let args = g.s3_args(&bucket);
    assert_eq!(args[..2], ["--storage", "s3"]);
    assert!(args.windows(2).any(|w| w[0] == "--s3-access-key-id" && w[1] == g.access_key_id));
}

#[test]
fn many_threads_share_one_garage() {
    if !garage::available() {
        return;
    }
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let g = garage::instance();
                let bucket = g.create_bucket();
                g.put_object(&bucket, "k", format!("v{i}").as_bytes());
                (g as *const garage::Garage as usize, g.get_object(&bucket, "k"))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|(p, _)| *p == results[0].0), "one shared instance");
    for (i, (_, v)) in results.iter().enumerate() {
        assert_eq!(v, format!("v{i}").as_bytes());
    }
}

#[test]
fn private_garage_keeps_its_objects_across_a_restart() {
    if !garage::available() {
        return;
    }
    let mut g = garage::private();
    let bucket = g.create_bucket();
    g.put_object(&bucket, "blob", b"survives");
    let (endpoint, pid) = (g.endpoint.clone(), g.pid());
    g.stop();
    assert_eq!(g.try_s3("GET", "/", None).0, 0, "nothing answers while stopped");
    g.restart();
    assert_eq!(g.endpoint, endpoint);
    assert_ne!(g.pid(), pid);
    assert_eq!(g.get_object(&bucket, "blob"), b"survives");
    assert_eq!(g.list_keys(&bucket, ""), vec![("blob".to_string(), 8)]);
}

/// A one-thread-per-connection HTTP server answering `name` to anything, echoing the Host it got.
fn tiny_server(name: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut host = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(h) = line.strip_prefix("Host:").or_else(|| line.strip_prefix("host:")) {
                        host = h.trim().to_string();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Host: {host}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
            });
        }
    });
    addr
}

#[test]
fn nginx_round_robins_over_upstreams() {
    let upstreams = vec![tiny_server("a"), tiny_server("b")];
    let lb = Nginx::start(&upstreams);
    let client = reqwest::blocking::Client::new();
    let mut bodies = String::new();
    for i in 0..6 {
        let resp = client.get(format!("{}/v2/x/{i}", lb.url)).send().unwrap();
        assert_eq!(resp.status(), 200, "{}", lb.logs());
        assert_eq!(resp.headers()["x-host"], lb.addr.as_str(), "the client's Host reaches the upstream");
        bodies.push_str(&resp.text().unwrap());
    }
    assert!(bodies == "ababab" || bodies == "bababa", "alternating: {bodies}");

    let resp = client.get(format!("{}/internal/anything", lb.url)).send().unwrap();
    assert_eq!(resp.status(), 404);

    lb.wait_logged(7);
    let used = lb.upstreams_used();
    assert_eq!(used.len(), 6, "the /internal/ request reached no upstream: {used:?}");
    for u in &upstreams {
        assert_eq!(used.iter().filter(|x| *x == u).count(), 3, "{used:?}");
    }
}
