use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use super::*;

/// Written by Apache's own tool: `htpasswd -nbB alice 'wonder-Land 1'` and
/// `htpasswd -nbB -C 4 bob 'b:colon'` (a password may hold `:`).
const HTPASSWD: &str = "\
# Brook's users
alice:$2y$05$hHfCS6G57ey5AcCzNiXCLeQSrEfIbAoWnWe2hPfPCBJfovb5PAY5i

bob:$2y$04$HMrPNhkv4zH/NGTGBG1gbOMvZYLZedm4tHh7Ey4AZ81weJWjfnu1S
";

fn basic(user: &str, password: &str) -> Vec<u8> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}").into_bytes()
}

#[test]
fn users_files_are_read_or_refused_naming_the_line() {
    let path = Path::new("/etc/brook/users");
    let users = Users::parse(HTPASSWD, path).expect("htpasswd's lines");
    assert_eq!(users.len(), 2);
    let cases: &[(&str, &[&str])] = &[
        ("", &["no users", "htpasswd -nbB"]),
        ("# only a comment\n", &["no users"]),
        ("alice\n", &["line 1", "expected NAME:HASH"]),
        (
            ":$2y$05$hHfCS6G57ey5AcCzNiXCLeQSrEfIbAoWnWe2hPfPCBJfovb5PAY5i",
            &["line 1", "empty"],
        ),
        (
            "carol:$apr1$8uH/k9EG$5AUUe2/ASKdEYofKzPMXO0\n",
            &["line 1", "`carol`", "$apr1$", "htpasswd -nbB carol"],
        ),
        ("dan:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", &["SHA-1"]),
        ("erin:plaintext\n", &["`erin`", "not a bcrypt hash"]),
        (
            "alice:$2y$05$hHfCS6G57ey5AcCzNiXCLeQSrEfIbAoWnWe2hPfPCBJfovb5PAY5i\n\
             alice:$2y$04$HMrPNhkv4zH/NGTGBG1gbOMvZYLZedm4tHh7Ey4AZ81weJWjfnu1S\n",
            &["line 2", "`alice` again", "line 1"],
        ),
    ];
    for (text, words) in cases {
        let err = Users::parse(text, path).expect_err(text).to_string();
        assert!(err.contains("/etc/brook/users"), "{err}");
        for w in *words {
            assert!(err.contains(w), "{text:?}: `{err}` lacks `{w}`");
        }
        assert!(!err.contains("hHfCS6G57"), "a hash in the message: {err}");
    }
}

#[test]
fn basic_headers_are_parsed_as_rfc_7617_has_them() {
    type Case<'a> = (&'a [u8], Option<(&'a str, &'a str)>);
    let cases: &[Case] = &[
        (b"Basic YWxpY2U6cHc=", Some(("alice", "pw"))),
        (b"basic  YWxpY2U6cHc= ", Some(("alice", "pw"))),
        // The first `:` splits: the password may hold more.
        (b"Basic Ym9iOmI6Y29sb24=", Some(("bob", "b:colon"))),
        (b"Basic !!!", None),
        (b"Basic YWxpY2U=", None),
        (b"Bearer abc", None),
        (b"\xff\xfe", None),
    ];
    for (header, want) in cases {
        let got = basic_credentials(header);
        let want = want.map(|(u, p)| (u.to_string(), p.to_string()));
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(header));
    }
}

#[tokio::test]
async fn passwords_are_checked_with_bcrypt_and_failures_counted_per_address() {
    let users = Users::parse(HTPASSWD, Path::new("users")).expect("users");
    let auth = Authenticator::new(
        users,
        FailureLimits {
            max_failures: 2,
            window: Duration::from_secs(60),
        },
    );
    let ip: Option<IpAddr> = Some([192, 0, 2, 7].into());
    let alice = basic("alice", "wonder-Land 1");
    // Twice: bcrypt the first time, the remembered digest the second.
    for _ in 0..2 {
        let got = auth.check(Some(&alice), ip).await;
        assert_eq!(got, Outcome::User("alice".into()));
    }
    let bob = basic("bob", "b:colon");
    assert_eq!(
        auth.check(Some(&bob), None).await,
        Outcome::User("bob".into())
    );
    assert_eq!(auth.check(None, ip).await, Outcome::Missing);
    assert_eq!(auth.check(Some(b"Bearer x"), ip).await, Outcome::Missing);
    assert_eq!(auth.check(Some(b"Basic %%%"), ip).await, Outcome::Malformed);
    let wrong = basic("alice", "wonder-Land 2");
    let unknown = basic("mallory", "wonder-Land 1");
    assert_eq!(
        auth.check(Some(&wrong), ip).await,
        Outcome::Refused {
            user: "alice".into(),
            failures: 1
        }
    );
    assert_eq!(
        auth.check(Some(&unknown), ip).await,
        Outcome::Refused {
            user: "mallory".into(),
            failures: 2
        }
    );
    // Blocked now, even with the right password, until the window ends.
    match auth.check(Some(&alice), ip).await {
        Outcome::Blocked { retry_after } => assert!(retry_after <= Duration::from_secs(60)),
        other => panic!("not blocked: {other:?}"),
    }
    let elsewhere: Option<IpAddr> = Some([192, 0, 2, 8].into());
    assert_eq!(
        auth.check(Some(&alice), elsewhere).await,
        Outcome::User("alice".into())
    );
}
