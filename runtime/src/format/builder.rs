//! Column builders for decoding: like Arrow's builders, but able to drop the values a
//! record appended when a later part of the record fails to decode, so a bad record
//! becomes a null row instead of misaligning the columns.

use std::sync::Arc;

use arrow::array::builder::{BooleanBufferBuilder, NullBufferBuilder};
use arrow::array::{
    ArrayRef, ArrowPrimitiveType, BinaryArray, BooleanArray, ListArray, MapArray, PrimitiveArray,
    StringArray, StructArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, FieldRef, Fields, Float64Type, Int32Type, Int64Type,
    Time32MillisecondType, TimeUnit, TimestampMillisecondType,
};
use arrow::error::ArrowError;

use super::Fail;

pub(crate) struct Prim<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    nulls: NullBufferBuilder,
}

impl<T: ArrowPrimitiveType> Prim<T> {
    fn new(capacity: usize) -> Self {
        Prim {
            values: Vec::with_capacity(capacity),
            nulls: NullBufferBuilder::new(capacity),
        }
    }

    pub(crate) fn push(&mut self, v: T::Native) {
        self.values.push(v);
        self.nulls.append_non_null();
    }

    fn push_null(&mut self) {
        self.values.push(T::Native::default());
        self.nulls.append_null();
    }

    fn truncate(&mut self, len: usize) {
        self.values.truncate(len);
        self.nulls.truncate(len);
    }

    fn finish(&mut self) -> PrimitiveArray<T> {
        PrimitiveArray::new(
            ScalarBuffer::from(std::mem::take(&mut self.values)),
            self.nulls.finish(),
        )
    }
}

pub(crate) struct Bools {
    values: BooleanBufferBuilder,
    nulls: NullBufferBuilder,
}

impl Bools {
    pub(crate) fn push(&mut self, v: bool) {
        self.values.append(v);
        self.nulls.append_non_null();
    }
}

/// Variable-length values (STRING or BYTES).
pub(crate) struct Bytes {
    data: Vec<u8>,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl Bytes {
    fn new(capacity: usize) -> Self {
        let mut offsets = Vec::with_capacity(capacity + 1);
        offsets.push(0);
        Bytes {
            data: Vec::new(),
            offsets,
            nulls: NullBufferBuilder::new(capacity),
        }
    }

    pub(crate) fn push(&mut self, v: &[u8]) -> Result<(), Fail> {
        self.data.extend_from_slice(v);
        self.close_value()
    }

    /// Room to write a value in place (e.g. base64-decoded bytes); call
    /// [`Bytes::close_value`] after writing.
    pub(crate) fn data_mut(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    /// Ends the value written since the last one through [`Bytes::data_mut`].
    pub(crate) fn close_value(&mut self) -> Result<(), Fail> {
        let end = i32::try_from(self.data.len())
            .map_err(|_| Fail::other("more than 2 GiB of text or bytes in one batch"))?;
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }

    /// Drops bytes written through [`Bytes::data_mut`] for a value that failed.
    pub(crate) fn abandon_value(&mut self) {
        let end = self.offsets.last().copied().unwrap_or(0) as usize;
        self.data.truncate(end);
    }

    fn push_null(&mut self) {
        self.abandon_value();
        let end = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(end);
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len + 1);
        self.nulls.truncate(len);
        self.abandon_value();
    }

    fn take(&mut self) -> (OffsetBuffer<i32>, Buffer, Option<arrow::buffer::NullBuffer>) {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        (
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(std::mem::take(&mut self.data)),
            self.nulls.finish(),
        )
    }
}

/// Offsets and validity of a list or map, whose items live in child builders.
pub(crate) struct Nested {
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl Nested {
    fn new(capacity: usize) -> Self {
        let mut offsets = Vec::with_capacity(capacity + 1);
        offsets.push(0);
        Nested {
            offsets,
            nulls: NullBufferBuilder::new(capacity),
        }
    }

    /// Ends an entry whose items end at `child_len` in the child builder(s).
    pub(crate) fn close(&mut self, child_len: usize) -> Result<(), Fail> {
        let end = i32::try_from(child_len)
            .map_err(|_| Fail::other("more than 2^31 array or map items in one batch"))?;
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }

    fn push_null(&mut self) {
        let end = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(end);
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Truncates to `len` entries and returns where their items end.
    fn truncate(&mut self, len: usize) -> usize {
        self.offsets.truncate(len + 1);
        self.nulls.truncate(len);
        self.offsets.last().copied().unwrap_or(0) as usize
    }

    fn take(&mut self) -> (OffsetBuffer<i32>, Option<arrow::buffer::NullBuffer>) {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        (
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            self.nulls.finish(),
        )
    }
}

/// What a builder holds, for error messages (cheap to take before borrowing the builder).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Boolean,
    Int,
    Bigint,
    Double,
    Decimal(u8, i8),
    String,
    Bytes,
    Time,
    Date,
    Timestamp,
    Array,
    Map,
    Struct,
}

impl Kind {
    /// The ksqlDB type name.
    pub(crate) fn name(self) -> String {
        match self {
            Kind::Boolean => "BOOLEAN".into(),
            Kind::Int => "INTEGER".into(),
            Kind::Bigint => "BIGINT".into(),
            Kind::Double => "DOUBLE".into(),
            Kind::Decimal(p, s) => format!("DECIMAL({p}, {s})"),
            Kind::String => "STRING".into(),
            Kind::Bytes => "BYTES".into(),
            Kind::Time => "TIME".into(),
            Kind::Date => "DATE".into(),
            Kind::Timestamp => "TIMESTAMP".into(),
            Kind::Array => "ARRAY".into(),
            Kind::Map => "MAP".into(),
            Kind::Struct => "STRUCT".into(),
        }
    }

    /// What a value must look like, for "expected …" messages.
    pub(crate) fn describe(self) -> String {
        match self {
            Kind::Boolean => "a BOOLEAN".into(),
            Kind::Int => "an INTEGER".into(),
            Kind::Bigint => "a BIGINT".into(),
            Kind::Double => "a DOUBLE".into(),
            Kind::Decimal(..) => format!("a {}", self.name()),
            Kind::String => "a STRING".into(),
            Kind::Bytes => "BYTES as a base64 string".into(),
            Kind::Time => "a TIME (milliseconds of the day)".into(),
            Kind::Date => "a DATE (days since 1970-01-01)".into(),
            Kind::Timestamp => "a TIMESTAMP (milliseconds since the epoch)".into(),
            Kind::Array => "an ARRAY".into(),
            Kind::Map => "a MAP (an object)".into(),
            Kind::Struct => "a STRUCT (an object)".into(),
        }
    }
}

/// A builder for one of the Arrow types [`brook_planner::types::arrow_type`] produces.
pub(crate) enum Builder {
    Boolean(Bools),
    Int(Prim<Int32Type>),
    Bigint(Prim<Int64Type>),
    Double(Prim<Float64Type>),
    Decimal {
        values: Prim<Decimal128Type>,
        precision: u8,
        scale: i8,
    },
    String(Bytes),
    Bytes(Bytes),
    Time(Prim<Time32MillisecondType>),
    Date(Prim<Date32Type>),
    Timestamp(Prim<TimestampMillisecondType>),
    Array {
        field: FieldRef,
        entries: Nested,
        items: Box<Builder>,
    },
    Map {
        entries_field: FieldRef,
        entries: Nested,
        keys: Box<Builder>,
        values: Box<Builder>,
    },
    Struct {
        fields: Fields,
        nulls: NullBufferBuilder,
        children: Vec<Builder>,
    },
}

impl Builder {
    pub(crate) fn new(data_type: &DataType, capacity: usize) -> Result<Builder, String> {
        Ok(match data_type {
            DataType::Boolean => Builder::Boolean(Bools {
                values: BooleanBufferBuilder::new(capacity),
                nulls: NullBufferBuilder::new(capacity),
            }),
            DataType::Int32 => Builder::Int(Prim::new(capacity)),
            DataType::Int64 => Builder::Bigint(Prim::new(capacity)),
            DataType::Float64 => Builder::Double(Prim::new(capacity)),
            DataType::Decimal128(precision, scale) => Builder::Decimal {
                values: Prim::new(capacity),
                precision: *precision,
                scale: *scale,
            },
            DataType::Utf8 => Builder::String(Bytes::new(capacity)),
            DataType::Binary => Builder::Bytes(Bytes::new(capacity)),
            DataType::Time32(TimeUnit::Millisecond) => Builder::Time(Prim::new(capacity)),
            DataType::Date32 => Builder::Date(Prim::new(capacity)),
            DataType::Timestamp(TimeUnit::Millisecond, None) => {
                Builder::Timestamp(Prim::new(capacity))
            }
            DataType::List(field) => Builder::Array {
                field: Arc::clone(field),
                entries: Nested::new(capacity),
                items: Box::new(Builder::new(field.data_type(), capacity)?),
            },
            DataType::Map(entries_field, _) => {
                let DataType::Struct(kv) = entries_field.data_type() else {
                    return Err(format!("unexpected map entries type {}", entries_field));
                };
                let (Some(k), Some(v)) = (kv.first(), kv.get(1)) else {
                    return Err("map entries need a key and a value field".into());
                };
                Builder::Map {
                    entries_field: Arc::clone(entries_field),
                    entries: Nested::new(capacity),
                    keys: Box::new(Builder::new(k.data_type(), capacity)?),
                    values: Box::new(Builder::new(v.data_type(), capacity)?),
                }
            }
            DataType::Struct(fields) => Builder::Struct {
                fields: fields.clone(),
                nulls: NullBufferBuilder::new(capacity),
                children: fields
                    .iter()
                    .map(|f| Builder::new(f.data_type(), capacity))
                    .collect::<Result<_, _>>()?,
            },
            other => return Err(format!("no decoder for Arrow type {other}")),
        })
    }

    pub(crate) fn kind(&self) -> Kind {
        match self {
            Builder::Boolean(_) => Kind::Boolean,
            Builder::Int(_) => Kind::Int,
            Builder::Bigint(_) => Kind::Bigint,
            Builder::Double(_) => Kind::Double,
            Builder::Decimal {
                precision, scale, ..
            } => Kind::Decimal(*precision, *scale),
            Builder::String(_) => Kind::String,
            Builder::Bytes(_) => Kind::Bytes,
            Builder::Time(_) => Kind::Time,
            Builder::Date(_) => Kind::Date,
            Builder::Timestamp(_) => Kind::Timestamp,
            Builder::Array { .. } => Kind::Array,
            Builder::Map { .. } => Kind::Map,
            Builder::Struct { .. } => Kind::Struct,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Builder::Boolean(b) => b.nulls.len(),
            Builder::Int(p) => p.values.len(),
            Builder::Bigint(p) => p.values.len(),
            Builder::Double(p) => p.values.len(),
            Builder::Decimal { values, .. } => values.values.len(),
            Builder::String(b) | Builder::Bytes(b) => b.len(),
            Builder::Time(p) => p.values.len(),
            Builder::Date(p) => p.values.len(),
            Builder::Timestamp(p) => p.values.len(),
            Builder::Array { entries, .. } | Builder::Map { entries, .. } => entries.len(),
            Builder::Struct { nulls, .. } => nulls.len(),
        }
    }

    pub(crate) fn push_null(&mut self) {
        match self {
            Builder::Boolean(b) => {
                b.values.append(false);
                b.nulls.append_null();
            }
            Builder::Int(p) => p.push_null(),
            Builder::Bigint(p) => p.push_null(),
            Builder::Double(p) => p.push_null(),
            Builder::Decimal { values, .. } => values.push_null(),
            Builder::String(b) | Builder::Bytes(b) => b.push_null(),
            Builder::Time(p) => p.push_null(),
            Builder::Date(p) => p.push_null(),
            Builder::Timestamp(p) => p.push_null(),
            Builder::Array { entries, .. } | Builder::Map { entries, .. } => entries.push_null(),
            Builder::Struct {
                nulls, children, ..
            } => {
                nulls.append_null();
                children.iter_mut().for_each(Builder::push_null);
            }
        }
    }

    /// Keeps the first `len` values, dropping the items of nested values with them.
    pub(crate) fn truncate(&mut self, len: usize) {
        match self {
            Builder::Boolean(b) => {
                b.values.truncate(len);
                b.nulls.truncate(len);
            }
            Builder::Int(p) => p.truncate(len),
            Builder::Bigint(p) => p.truncate(len),
            Builder::Double(p) => p.truncate(len),
            Builder::Decimal { values, .. } => values.truncate(len),
            Builder::String(b) | Builder::Bytes(b) => b.truncate(len),
            Builder::Time(p) => p.truncate(len),
            Builder::Date(p) => p.truncate(len),
            Builder::Timestamp(p) => p.truncate(len),
            Builder::Array { entries, items, .. } => {
                let end = entries.truncate(len);
                items.truncate(end);
            }
            Builder::Map {
                entries,
                keys,
                values,
                ..
            } => {
                let end = entries.truncate(len);
                keys.truncate(end);
                values.truncate(end);
            }
            Builder::Struct {
                nulls, children, ..
            } => {
                nulls.truncate(len);
                children.iter_mut().for_each(|c| c.truncate(len));
            }
        }
    }

    /// The array of the values so far; the builder is empty afterwards.
    pub(crate) fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Builder::Boolean(b) => Arc::new(BooleanArray::new(b.values.finish(), b.nulls.finish())),
            Builder::Int(p) => Arc::new(p.finish()),
            Builder::Bigint(p) => Arc::new(p.finish()),
            Builder::Double(p) => Arc::new(p.finish()),
            Builder::Decimal {
                values,
                precision,
                scale,
            } => Arc::new(
                values
                    .finish()
                    .with_precision_and_scale(*precision, *scale)?,
            ),
            Builder::String(b) => {
                let (offsets, data, nulls) = b.take();
                Arc::new(StringArray::try_new(offsets, data, nulls)?)
            }
            Builder::Bytes(b) => {
                let (offsets, data, nulls) = b.take();
                Arc::new(BinaryArray::try_new(offsets, data, nulls)?)
            }
            Builder::Time(p) => Arc::new(p.finish()),
            Builder::Date(p) => Arc::new(p.finish()),
            Builder::Timestamp(p) => Arc::new(p.finish()),
            Builder::Array {
                field,
                entries,
                items,
            } => {
                let (offsets, nulls) = entries.take();
                let items = items.finish()?;
                Arc::new(ListArray::try_new(
                    Arc::clone(field),
                    offsets,
                    items,
                    nulls,
                )?)
            }
            Builder::Map {
                entries_field,
                entries,
                keys,
                values,
            } => {
                let (offsets, nulls) = entries.take();
                let DataType::Struct(kv) = entries_field.data_type() else {
                    return Err(ArrowError::InvalidArgumentError(format!(
                        "unexpected map entries type {entries_field}"
                    )));
                };
                let entries =
                    StructArray::try_new(kv.clone(), vec![keys.finish()?, values.finish()?], None)?;
                Arc::new(MapArray::try_new(
                    Arc::clone(entries_field),
                    offsets,
                    entries,
                    nulls,
                    false,
                )?)
            }
            Builder::Struct {
                fields,
                nulls,
                children,
            } => {
                let len = nulls.len();
                let nulls = nulls.finish();
                let arrays = children
                    .iter_mut()
                    .map(Builder::finish)
                    .collect::<Result<Vec<_>, _>>()?;
                Arc::new(StructArray::try_new_with_length(
                    fields.clone(),
                    arrays,
                    nulls,
                    len,
                )?)
            }
        })
    }
}
