//! ksqlDB's server properties file (`ksql-server.properties`): Java's properties syntax,
//! with Kafka's configuration-provider references `${env:NAME}` and `${file:PATH:KEY}`
//! resolved when read, so that passwords stay off the command line, where `ps` shows them.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A properties file that cannot be used, or a reference that cannot be resolved. No
/// message carries a resolved value: they are secrets.
#[derive(Debug, Error)]
pub enum ConfigFileError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "setting `{key}`: the environment variable `{name}` (from `${{env:{name}}}`) is not set"
    )]
    MissingEnv { key: String, name: String },
    #[error("setting `{key}`: `${{file:{path}:{entry}}}`: {reason}")]
    FileReference {
        key: String,
        path: String,
        entry: String,
        reason: String,
    },
    #[error("setting `{key}`: `{reference}` names the configuration provider `{provider}`; Brook resolves `${{env:NAME}}` and `${{file:PATH:KEY}}`")]
    UnknownProvider {
        key: String,
        reference: String,
        provider: String,
    },
}

/// Kafka's settings that declare configuration providers: Brook has `env` and `file` built
/// in, so they are read past.
const PROVIDER_SETTINGS: &str = "config.providers";

/// Reads `path` and resolves its references; `config.providers…` lines are dropped.
pub fn load(path: &Path) -> Result<Vec<(String, String)>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let entries = parse(&text).map_err(|(line, reason)| ConfigFileError::Syntax {
        path: path.to_path_buf(),
        line,
        reason,
    })?;
    entries
        .into_iter()
        .filter(|(k, _)| !k.starts_with(PROVIDER_SETTINGS))
        .map(|(k, v)| Ok((k.clone(), resolve(&k, &v)?)))
        .collect()
}

/// The file's settings, then `overrides` (`--config`, which win), every value resolved.
pub fn merge(
    file: Option<&Path>,
    overrides: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, ConfigFileError> {
    let mut all = match file {
        Some(path) => load(path)?,
        None => Vec::new(),
    };
    for (k, v) in overrides {
        let v = resolve(&k, &v)?;
        all.push((k, v));
    }
    Ok(all)
}

/// Java's `Properties.load`: `key=value`, `key: value` or `key value` lines, `#` and `!`
/// comments, a trailing `\` continuing a line, and `\t \n \r \f \uXXXX` escapes. Errors
/// carry the (1-based) line.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, first)) = lines.next() {
        let start = first.trim_start_matches([' ', '\t', '\x0c']);
        if start.is_empty() || start.starts_with(['#', '!']) {
            continue;
        }
        let mut logical = String::from(start);
        while ends_in_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start_matches([' ', '\t', '\x0c'])),
                None => break,
            }
        }
        out.push(split_entry(&logical).map_err(|reason| (i + 1, reason))?);
    }
    Ok(out)
}

/// Whether a line ends in an odd number of backslashes (an even number are escaped ones).
fn ends_in_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// A logical line's key and value, unescaped.
fn split_entry(line: &str) -> Result<(String, String), String> {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() && !matches!(chars[i], '=' | ':' | ' ' | '\t' | '\x0c') {
        // An escaped separator belongs to the key.
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    let key_end = i.min(chars.len());
    while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\x0c') {
        i += 1;
    }
    if i < chars.len() && matches!(chars[i], '=' | ':') {
        i += 1;
    }
    while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\x0c') {
        i += 1;
    }
    let key: String = chars[..key_end].iter().collect();
    let value: String = chars[i.min(chars.len())..].iter().collect();
    Ok((unescape(&key)?, unescape(&value)?))
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("malformed \\uxxxx escape `\\u{hex}`"))?;
                out.push(code);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// `value` with every `${env:NAME}` and `${file:PATH:KEY}` replaced; other `${…}` (ksqlDB's
/// variables have no provider) are left as they are. `key` names the setting in errors.
pub fn resolve(key: &str, value: &str) -> Result<String, ConfigFileError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let reference = &rest[start..start + len + 1];
        let inner = &reference[2..reference.len() - 1];
        out.push_str(&rest[..start]);
        match inner.split_once(':') {
            Some((provider, target)) if is_provider_name(provider) => {
                out.push_str(&lookup(key, reference, provider, target)?);
            }
            _ => out.push_str(reference),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_provider_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn lookup(
    key: &str,
    reference: &str,
    provider: &str,
    target: &str,
) -> Result<String, ConfigFileError> {
    match provider {
        "env" => std::env::var(target).map_err(|_| ConfigFileError::MissingEnv {
            key: key.to_string(),
            name: target.to_string(),
        }),
        "file" => {
            // Kafka's form: the path, then the key after the last `:`.
            let (path, entry) = target.rsplit_once(':').unwrap_or((target, ""));
            file_entry(path, entry).map_err(|reason| ConfigFileError::FileReference {
                key: key.to_string(),
                path: path.to_string(),
                entry: entry.to_string(),
                reason,
            })
        }
        other => Err(ConfigFileError::UnknownProvider {
            key: key.to_string(),
            reference: reference.to_string(),
            provider: other.to_string(),
        }),
    }
}

/// The value of `entry` in the properties file `path` (Kafka's FileConfigProvider).
fn file_entry(path: &str, entry: &str) -> Result<String, String> {
    if entry.is_empty() {
        return Err("expected ${file:PATH:KEY}, the key of the value in that file".into());
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let entries = parse(&text).map_err(|(line, reason)| format!("line {line}: {reason}"))?;
    entries
        .into_iter()
        .rev()
        .find(|(k, _)| k == entry)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("the file has no `{entry}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_properties_syntax() {
        let text = "# a comment\n\
                    ! another\n\
                    \n\
                    a=1\n\
                    b : two words  \n\
                    c three\n\
                    \x20 d=indented\n\
                    e=\n\
                    f\n\
                    sasl.jaas.config=\\\n\
                    \x20   org.apache.kafka.common.security.plain.PlainLoginModule required \\\n\
                    \x20   username=\"u\" \\\n\
                    \x20   password=\"p\";\n\
                    key\\=with\\:separators=v\n\
                    esc=tab\\there\\u0041\\\\\n\
                    path=C:\\\\dir\n";
        let got = parse(text).expect("parses");
        let want: Vec<(&str, &str)> = vec![
            ("a", "1"),
            ("b", "two words  "),
            ("c", "three"),
            ("d", "indented"),
            ("e", ""),
            ("f", ""),
            (
                "sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"p\";",
            ),
            ("key=with:separators", "v"),
            ("esc", "tab\thereA\\"),
            ("path", "C:\\dir"),
        ];
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_bad_escape_names_its_line() {
        let (line, reason) = parse("a=1\nb=\\u12x4\n").expect_err("malformed");
        assert_eq!(line, 2);
        assert!(reason.contains("\\u"), "{reason}");
    }

    #[test]
    fn env_and_file_references_are_resolved() {
        let dir = tempfile::tempdir().expect("dir");
        let secrets = dir.path().join("secrets.properties");
        std::fs::write(&secrets, "kafka.password=s3cret\nother=x\n").expect("write");
        // A variable only this test sets.
        std::env::set_var("BROOK_TEST_CONFIG_FILE_USER", "alice");
        let value = format!(
            "user=${{env:BROOK_TEST_CONFIG_FILE_USER}} pw=${{file:{}:kafka.password}} ${{var}}",
            secrets.display()
        );
        assert_eq!(
            resolve("k", &value).expect("resolves"),
            "user=alice pw=s3cret ${var}"
        );

        let cases: Vec<(String, &str)> = vec![
            (
                "${env:BROOK_TEST_UNSET_VARIABLE}".into(),
                "BROOK_TEST_UNSET_VARIABLE",
            ),
            (
                format!("${{file:{}:missing}}", secrets.display()),
                "has no `missing`",
            ),
            (
                format!("${{file:{}}}", dir.path().join("nope").display()),
                "KEY",
            ),
            ("${file:/no/such/file:k}".into(), "cannot read it"),
            ("${vault:secret/kafka:pw}".into(), "provider `vault`"),
        ];
        for (value, want) in cases {
            let e = resolve("sasl.jaas.config", &value)
                .expect_err(&value)
                .to_string();
            assert!(
                e.contains(want) && e.contains("sasl.jaas.config"),
                "{value}: {e}"
            );
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn the_file_comes_first_and_overrides_win() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("ksql-server.properties");
        std::fs::write(
            &file,
            "config.providers=env,file\nconfig.providers.env.class=x\na=from-file\nb=kept\n",
        )
        .expect("write");
        let all = merge(Some(&file), vec![("a".into(), "from-flag".into())]).expect("merged");
        assert_eq!(
            all,
            vec![
                ("a".to_string(), "from-file".to_string()),
                ("b".to_string(), "kept".to_string()),
                ("a".to_string(), "from-flag".to_string()),
            ]
        );
        let e = load(&dir.path().join("absent"))
            .expect_err("absent")
            .to_string();
        assert!(e.contains("absent"), "{e}");
    }
}
