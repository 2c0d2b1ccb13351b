//! Issue 6 (security): TLS to Redis with a password, secrets kept out of output.

use crate::common;

use std::process::Command;

use common::{free_port, superhero, TestRedis};

/// Makes a CA and a localhost server certificate signed by it; None when openssl is missing.
fn make_certs(dir: &std::path::Path) -> Option<()> {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .ok()?;
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=superhero-test-ca",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    ok.then_some(())
}

#[test]
fn rediss_url_with_password_works_and_is_never_printed() {
    let certs = tempfile::tempdir().unwrap();
    if make_certs(certs.path()).is_none() {
        // The test environment (.ci/run) installs openssl; say so loudly if it is missing.
        panic!("openssl is needed to make test certificates");
    }
    let tls_port = free_port().to_string();
    let path = |f: &str| certs.path().join(f).to_string_lossy().into_owned();
    let redis = TestRedis::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &path("srv.pem"),
        "--tls-key-file",
        &path("srv.key"),
        "--tls-ca-cert-file",
        &path("ca.pem"),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "tls-s3cret",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("rediss://:tls-s3cret@localhost:{tls_port}/0");
    let out = superhero(dir.path())
        .args(["build-db", "--log-level", "debug"])
        .env("REDIS_URL", &url)
        .env("SSL_CERT_FILE", path("ca.pem"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("tls-s3cret"), "{err}");
    let mut conn = redis::Client::open(format!("redis://:tls-s3cret@127.0.0.1:{}/0", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let n: u64 = redis::cmd("HLEN")
        .arg("superheros")
        .query(&mut conn)
        .unwrap();
    assert!(n >= 100);

    // Without the CA the certificate is refused: one clear line, no password.
    let out = superhero(dir.path())
        .arg("build-db")
        .env("REDIS_URL", &url)
        .env("SSL_CERT_FILE", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot reach Redis at rediss://********@localhost"),
        "{err}"
    );
    assert!(!err.contains("tls-s3cret"), "{err}");
}

/// Every role (server, fanout, worker, player, build-db: `demo` runs them all through the same
/// Redis layer) works against a password-protected Redis, and the password is never printed.
#[test]
fn every_role_connects_with_the_password_and_never_prints_it() {
    let redis = TestRedis::start_with(&["--requirepass", "r0les-pw-777"]);
    let dir = tempfile::tempdir().unwrap();
    let out = superhero(dir.path())
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .env("REDIS_PASSWORD", "r0les-pw-777")
        .env("LOG_LEVEL", "DEBUG")
        .args(["demo", "--players", "2", "--workers", "1", "--games", "1"])
        .args(["--participants", "2", "--quiet", "--json", "--output-dir"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(summary["private_redis"], false, "{summary}");
    assert_eq!(summary["games_processed"], 1, "{summary}");
    assert!(!stdout.contains("r0les-pw-777") && !stderr.contains("r0les-pw-777"));
    // Off a terminal without -v the roles' lines go to the demo's log file.
    let log = std::fs::read_to_string(dir.path().join("out").join("superhero-demo.log"))
        .expect("the demo's log file");
    assert!(!log.contains("r0les-pw-777"), "{log}");
    assert!(
        log.contains("effective settings"),
        "config is logged at DEBUG"
    );
}
