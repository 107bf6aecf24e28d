//! Serialization formats of keys and values, as named in `WITH (…)`.

use std::fmt;

use crate::PlanError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormatKind {
    Json,
    JsonSr,
    Delimited,
    Kafka,
    None,
    Avro,
    Protobuf,
    ProtobufNoSr,
}

impl FormatKind {
    pub fn parse(name: &str) -> Result<FormatKind, PlanError> {
        Ok(match name.to_ascii_uppercase().as_str() {
            "JSON" => FormatKind::Json,
            "JSON_SR" => FormatKind::JsonSr,
            "DELIMITED" => FormatKind::Delimited,
            "KAFKA" => FormatKind::Kafka,
            "NONE" => FormatKind::None,
            "AVRO" => FormatKind::Avro,
            "PROTOBUF" => FormatKind::Protobuf,
            "PROTOBUF_NOSR" => FormatKind::ProtobufNoSr,
            _ => return Err(PlanError::UnknownFormat(name.to_string())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FormatKind::Json => "JSON",
            FormatKind::JsonSr => "JSON_SR",
            FormatKind::Delimited => "DELIMITED",
            FormatKind::Kafka => "KAFKA",
            FormatKind::None => "NONE",
            FormatKind::Avro => "AVRO",
            FormatKind::Protobuf => "PROTOBUF",
            FormatKind::ProtobufNoSr => "PROTOBUF_NOSR",
        }
    }
}

impl fmt::Display for FormatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format with its options, for the key or the value of a source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FormatSpec {
    pub kind: FormatKind,
    /// DELIMITED's field separator (`VALUE_DELIMITER` / `KEY_DELIMITER`), default `,`.
    pub delimiter: char,
    /// `WRAP_SINGLE_VALUE`: whether a single column is written inside an object/record
    /// (`Some(true)`) or bare (`Some(false)`); `None` is the format's default (values are
    /// wrapped, keys are not).
    pub wrap_single_value: Option<bool>,
}

impl FormatSpec {
    pub fn new(kind: FormatKind) -> Self {
        FormatSpec {
            kind,
            delimiter: ',',
            wrap_single_value: None,
        }
    }
}
