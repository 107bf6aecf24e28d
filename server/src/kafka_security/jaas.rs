//! Kafka's `sasl.jaas.config`: one login module, its control flag and its options, e.g.
//! `org.apache.kafka.common.security.plain.PlainLoginModule required username="u"
//! password="p";`. Errors describe the text's shape, never its values (a password is one).

use std::collections::BTreeMap;

/// A parsed login module.
pub(super) struct Jaas {
    pub class: String,
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for Jaas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jaas")
            .field("class", &self.class)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Jaas {
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    /// The class's last segment (`PlainLoginModule`).
    pub fn module(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or(&self.class)
    }
}

const FLAGS: &[&str] = &["required", "requisite", "sufficient", "optional"];

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        while self.chars.next_if(|c| c.is_whitespace()).is_some() {}
    }

    /// Characters up to whitespace, `;` or `=`.
    fn word(&mut self) -> String {
        let mut w = String::new();
        while let Some(c) = self
            .chars
            .next_if(|c| !c.is_whitespace() && *c != ';' && *c != '=')
        {
            w.push(c);
        }
        w
    }

    /// A `"…"` value (with `\"` and `\\` escapes) or a bare word.
    fn value(&mut self, option: &str) -> Result<String, String> {
        if self.chars.next_if_eq(&'"').is_none() {
            return Ok(self.word());
        }
        let mut v = String::new();
        loop {
            match self.chars.next() {
                Some('"') => return Ok(v),
                Some('\\') => match self.chars.next() {
                    Some(c) => v.push(c),
                    None => break,
                },
                Some(c) => v.push(c),
                None => break,
            }
        }
        Err(format!(
            "the quoted value of option `{option}` has no closing `\"`"
        ))
    }
}

/// Parses `text`; it must hold exactly one login module, as Kafka's clients require.
pub(super) fn parse(text: &str) -> Result<Jaas, String> {
    let mut c = Cursor {
        chars: text.chars().peekable(),
    };
    c.skip_space();
    let class = c.word();
    if class.is_empty() {
        return Err("expected a login module class, e.g. \
                    org.apache.kafka.common.security.plain.PlainLoginModule"
            .into());
    }
    c.skip_space();
    let flag = c.word();
    if !FLAGS.iter().any(|f| f.eq_ignore_ascii_case(&flag)) {
        return Err(format!(
            "expected a control flag (required, requisite, sufficient or optional) after {class}"
        ));
    }
    let mut options = BTreeMap::new();
    loop {
        c.skip_space();
        match c.chars.peek() {
            None => break,
            Some(&';') => {
                c.chars.next();
                c.skip_space();
                if c.chars.peek().is_some() {
                    return Err(
                        "expected one login module; Kafka's clients take exactly one".into(),
                    );
                }
                break;
            }
            Some(_) => {}
        }
        let name = c.word();
        c.skip_space();
        if name.is_empty() || c.chars.next_if_eq(&'=').is_none() {
            return Err(format!(
                "expected option=value after {}",
                if name.is_empty() {
                    "the control flag"
                } else {
                    &name
                }
            ));
        }
        c.skip_space();
        let value = c.value(&name)?;
        options.insert(name, value);
    }
    Ok(Jaas { class, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_modules_as_users_write_them() {
        let cases = [
            (
                r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="p@ss w;rd";"#,
                "PlainLoginModule",
                vec![("password", "p@ss w;rd"), ("username", "alice")],
            ),
            (
                "org.apache.kafka.common.security.scram.ScramLoginModule REQUIRED\n  username=bob\n  password=\"a\\\"quote\\\\\"",
                "ScramLoginModule",
                vec![("password", "a\"quote\\"), ("username", "bob")],
            ),
            (
                r#"org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="admin";"#,
                "OAuthBearerLoginModule",
                vec![("unsecuredLoginStringClaim_sub", "admin")],
            ),
        ];
        for (text, module, want) in cases {
            let j = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(j.module(), module);
            let got: Vec<(&str, &str)> = j
                .options
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn malformed_text_is_described_without_its_values() {
        let cases = [
            ("", "login module class"),
            ("a.B", "control flag"),
            ("a.B maybe user=\"x\";", "control flag"),
            ("a.B required username", "option=value"),
            (r#"a.B required password="hunter2"#, "closing"),
            (
                r#"a.B required password="hunter2"; c.D required;"#,
                "exactly one",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let j = parse(r#"a.B required password="hunter2";"#).expect("parses");
        assert!(!format!("{j:?}").contains("hunter2"));
    }
}
