//! `brook https://…` and `brook grpcs://…` against a server with TLS and users, as ksql's
//! CLI is used against a secured ksqlDB: `--user`, the password from BROOK_PASSWORD or
//! asked for on the terminal (not echoed), `--ca` for the server's CA. A script runs end to
//! end; a wrong password, a missing login and an unknown CA are each reported as such.
//! Certificates are made with the `openssl` command.

#[path = "repl/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use server::{brook, Server};

const USER: &str = "alice";
/// The password of the users file's line, which Apache's `htpasswd -nbB alice 'wonder-Land
/// 1'` wrote.
const PASSWORD: &str = "wonder-Land 1";
const USERS: &str = "alice:$2y$05$hHfCS6G57ey5AcCzNiXCLeQSrEfIbAoWnWe2hPfPCBJfovb5PAY5i\n";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A CA, and the server's certificate from it for 127.0.0.1 and localhost: (CA,
/// certificate, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = vec!["req", "-x509"];
    ca.extend(EC);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Brook test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(EC);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("san.cnf");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "san.cnf",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

struct Secured {
    server: Server,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Secured {
    fn start() -> Secured {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, cert, key) = certificates(dir.path());
        let users = dir.path().join("users");
        std::fs::write(&users, USERS).expect("users");
        let server = Server::start_with(&[
            "--tls-cert",
            utf8(&cert),
            "--tls-key",
            utf8(&key),
            "--users",
            utf8(&users),
        ]);
        Secured {
            server,
            ca,
            _dir: dir,
        }
    }

    /// The server's address with `scheme` (`https`, `grpcs`).
    fn url(&self, scheme: &str) -> String {
        self.server.api.replacen("http", scheme, 1)
    }
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `brook ARGS`, with BROOK_PASSWORD set to `password` (none: unset).
fn run(args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new(brook());
    cmd.args(args)
        .env_remove("COLUMNS")
        .env_remove("BROOK_USER")
        .env_remove("BROOK_PASSWORD");
    if let Some(p) = password {
        cmd.env("BROOK_PASSWORD", p);
    }
    cmd.output().expect("brook runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn the_repl_runs_a_script_over_https_and_grpcs_with_a_user() {
    let s = Secured::start();
    let https = s.url("https");
    let ca = utf8(&s.ca);
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("orders.sql");
    let mut sql = String::from(
        "CREATE STREAM tls_orders (id STRING KEY, total DOUBLE)\n\
         \x20   WITH (KAFKA_TOPIC='tls_orders', VALUE_FORMAT='JSON', PARTITIONS=1);\n",
    );
    for i in 0..3 {
        sql.push_str(&format!(
            "INSERT INTO tls_orders (id, total) VALUES ('o{i}', {i}.5);\n"
        ));
    }
    sql.push_str("SET 'auto.offset.reset'='earliest';\n");
    sql.push_str("SELECT id, total FROM tls_orders EMIT CHANGES LIMIT 3;\n");
    sql.push_str("PRINT 'tls_orders' FROM BEGINNING LIMIT 1;\n");
    std::fs::write(&script, sql).expect("script");

    let out = run(
        &[&https, "--user", USER, "--ca", ca, "-f", utf8(&script)],
        Some(PASSWORD),
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("Stream created"), "{stdout}");
    assert!(stdout.contains("3 rows in"), "{stdout}");
    for i in 0..3 {
        assert!(stdout.contains(&format!("| o{i} ")), "o{i}:\n{stdout}");
    }
    assert_eq!(stdout.matches("rowtime: ").count(), 1, "PRINT: {stdout}");

    // The gRPC form: grpcs://, the password on the command line this time.
    let grpcs = s.url("grpcs");
    let out = run(
        &[
            &grpcs,
            "-u",
            USER,
            "-p",
            PASSWORD,
            "--ca",
            ca,
            "-e",
            "SHOW STREAMS;",
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains(" TLS_ORDERS  | tls_orders  |"), "{stdout}");
}

#[test]
fn refused_logins_and_unknown_certificates_are_reported_as_such() {
    let s = Secured::start();
    let https = s.url("https");
    let grpcs = s.url("grpcs");
    let ca = utf8(&s.ca);
    let show = ["-e", "SHOW STREAMS;"];
    // (arguments, BROOK_PASSWORD, what stderr must say)
    let cases: Vec<(Vec<&str>, Option<&str>, &[&str])> = vec![
        (
            vec![&https, "--user", USER, "--ca", ca],
            Some("not-it"),
            &["Unauthorized", "did not accept user \"alice\""],
        ),
        (
            vec![&grpcs, "--user", USER, "--ca", ca],
            Some("not-it"),
            &["Unauthorized", "did not accept user \"alice\""],
        ),
        (
            vec![&https, "--ca", ca],
            None,
            &[
                "Unauthorized",
                "requires a user name and password",
                "--user",
            ],
        ),
        (
            vec![&https, "--user", USER],
            Some(PASSWORD),
            &["cannot reach the server", "certificate"],
        ),
        (
            vec![&https, "--ca", "/no/such/ca.pem"],
            None,
            &["/no/such/ca.pem"],
        ),
        // No terminal to ask on: say how to give the password instead.
        (
            vec![&https, "--user", USER, "--ca", ca],
            None,
            &["--password", "BROOK_PASSWORD"],
        ),
    ];
    for (mut args, password, words) in cases {
        args.extend(show);
        let out = run(&args, password);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        for w in words {
            assert!(
                stderr.contains(w),
                "{args:?}: stderr lacks {w:?}:\n{stderr}"
            );
        }
        assert!(
            !stderr.contains(PASSWORD),
            "the password in a message: {stderr}"
        );
    }
}

#[test]
fn the_password_is_asked_for_on_the_terminal_without_echo() {
    let s = Secured::start();
    let https = s.url("https");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(brook());
    cmd.args([https.as_str(), "--user", USER, "--ca", utf8(&s.ca)])
        .env("BROOK_HISTORY", dir.path().join("history"))
        .env("TERM", "xterm")
        .env_remove("BROOK_PASSWORD")
        .env_remove("COLUMNS");
    let mut p = rexpect::session::spawn_command(cmd, Some(60_000)).expect("brook starts");
    p.exp_string("Enter password: ")
        .expect("the password prompt");
    p.send_line(PASSWORD).expect("password sent");
    let banner = p.exp_string("Type 'help'").expect("the banner");
    assert!(
        banner.contains(&format!("Server: {https} (version")),
        "logged in: {banner}"
    );
    assert!(
        !banner.contains(PASSWORD),
        "the password was echoed: {banner:?}"
    );
    p.send_line("exit").expect("exit sent");
    p.exp_eof().expect("brook exits");
}
