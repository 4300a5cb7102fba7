//! The SQL both backends run: parameters, rows, and the little dialect between SQLite and
//! PostgreSQL.
//!
//! Statements are written once, with SQLite's `?N` placeholders, in the SQL both databases
//! speak (`ON CONFLICT`, `RETURNING`, `CASE`); [`to_postgres`] turns the placeholders into
//! `$N`. The few statements that must differ are written twice and chosen with
//! [`super::Tx::dialect`]. Values cross as [`Param`] and [`Value`], so the statements in
//! `tx/` never see which database runs them.

use std::error::Error;

use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::StoreError;

/// What a parameter is when it is NULL (PostgreSQL must be told the type of every parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Int,
    Real,
    Text,
    Blob,
}

impl Kind {
    pub(super) fn postgres_type(self) -> Type {
        match self {
            Kind::Int => Type::INT8,
            Kind::Real => Type::FLOAT8,
            Kind::Text => Type::TEXT,
            Kind::Blob => Type::BYTEA,
        }
    }
}

/// One bound value. `Raw` is a message's bytes: SQLite inserts a zero blob of their length
/// and [`super::Tx::fill_raw`] writes them in place, PostgreSQL binds them as they are.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null(Kind),
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
    Raw(&'a [u8]),
}

impl Param<'_> {
    pub(super) fn kind(&self) -> Kind {
        match self {
            Param::Null(kind) => *kind,
            Param::Int(_) => Kind::Int,
            Param::Real(_) => Kind::Real,
            Param::Text(_) => Kind::Text,
            Param::Blob(_) | Param::Raw(_) => Kind::Blob,
        }
    }
}

/// A Rust value that can be bound to a statement.
pub trait ToParam {
    fn to_param(&self) -> Param<'_>;
}

/// The [`Kind`] of a type, for its `None`.
pub trait Typed {
    const KIND: Kind;
}

macro_rules! integer_params {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> Param<'_> {
                Param::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
        impl Typed for $t {
            const KIND: Kind = Kind::Int;
        }
    )*};
}
integer_params!(i64, i32, u32, u64, usize, u16, u8);

impl ToParam for bool {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl Typed for bool {
    const KIND: Kind = Kind::Int;
}
impl ToParam for f64 {
    fn to_param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}
impl Typed for f64 {
    const KIND: Kind = Kind::Real;
}
impl ToParam for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl Typed for str {
    const KIND: Kind = Kind::Text;
}
impl ToParam for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl Typed for String {
    const KIND: Kind = Kind::Text;
}
impl ToParam for [u8] {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl Typed for [u8] {
    const KIND: Kind = Kind::Blob;
}
impl ToParam for Vec<u8> {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl Typed for Vec<u8> {
    const KIND: Kind = Kind::Blob;
}
impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}
impl<T: Typed + ?Sized> Typed for &T {
    const KIND: Kind = T::KIND;
}
impl<T: ToParam + Typed> ToParam for Option<T> {
    fn to_param(&self) -> Param<'_> {
        match self {
            Some(value) => value.to_param(),
            None => Param::Null(T::KIND),
        }
    }
}

/// A message's raw bytes (see [`Param::Raw`]).
pub struct Raw<'a>(pub &'a [u8]);

impl ToParam for Raw<'_> {
    fn to_param(&self) -> Param<'_> {
        Param::Raw(self.0)
    }
}

/// The parameters of one statement: `params![a, b]`, `[a]` or `[]`.
pub trait Params {
    fn to_params(&self) -> Vec<Param<'_>>;
}

impl Params for &[&dyn ToParam] {
    fn to_params(&self) -> Vec<Param<'_>> {
        self.iter().map(|p| p.to_param()).collect()
    }
}

/// Values already made parameters (a copied row: `migrate-store`).
impl Params for &[Param<'_>] {
    fn to_params(&self) -> Vec<Param<'_>> {
        self.to_vec()
    }
}

impl Params for [&dyn ToParam; 0] {
    fn to_params(&self) -> Vec<Param<'_>> {
        Vec::new()
    }
}

macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToParam> Params for [T; $n] {
            fn to_params(&self) -> Vec<Param<'_>> {
                self.iter().map(ToParam::to_param).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3);

/// `params![a, b, c]`: values of different types for one statement.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::store::sql::ToParam),*] as &[&dyn $crate::store::sql::ToParam]
    };
}
pub(crate) use params;

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as Owned, ValueRef};
        Ok(match *self {
            Param::Null(_) => ToSqlOutput::Owned(Owned::Null),
            Param::Int(i) => ToSqlOutput::Owned(Owned::Integer(i)),
            Param::Real(f) => ToSqlOutput::Owned(Owned::Real(f)),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Param::Raw(b) => ToSqlOutput::ZeroBlob(b.len() as u64),
        })
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match *self {
            Param::Null(_) => Ok(IsNull::Yes),
            Param::Int(i) => i.to_sql(ty, out),
            Param::Real(f) => f.to_sql(ty, out),
            Param::Text(s) => s.to_sql(ty, out),
            Param::Blob(b) | Param::Raw(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Every statement is prepared with the types of its parameters ([`Kind`]).
        true
    }

    to_sql_checked!();
}

/// One column of a result row, as both databases hand it out.
#[derive(Debug, Clone, Copy)]
pub enum Value<'r> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'r str),
    Blob(&'r [u8]),
}

impl Value<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real number",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
        }
    }
}

/// A Rust value a column can be read as.
pub trait FromValue: Sized {
    fn from_value(value: Value<'_>) -> Result<Self, String>;
}

fn expected<T>(what: &str, found: Value<'_>) -> Result<T, String> {
    Err(format!("expected {what}, found {}", found.describe()))
}

macro_rules! integer_values {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(value: Value<'_>) -> Result<Self, String> {
                match value {
                    Value::Int(i) => <$t>::try_from(i).map_err(|_| format!("{i} is out of range")),
                    other => expected("an integer", other),
                }
            }
        }
    )*};
}
integer_values!(i64, i32, u32, u64, usize, u16, u8);

impl FromValue for bool {
    fn from_value(value: Value<'_>) -> Result<Self, String> {
        match value {
            Value::Int(i) => Ok(i != 0),
            other => expected("a truth value", other),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: Value<'_>) -> Result<Self, String> {
        match value {
            Value::Real(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            other => expected("a number", other),
        }
    }
}

impl FromValue for String {
    fn from_value(value: Value<'_>) -> Result<Self, String> {
        match value {
            Value::Text(s) => Ok(s.to_string()),
            other => expected("text", other),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: Value<'_>) -> Result<Self, String> {
        match value {
            Value::Blob(b) => Ok(b.to_vec()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            other => expected("bytes", other),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: Value<'_>) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A column number (`r.get(0)`).
pub trait ColumnIndex {
    fn index(self) -> usize;
}

impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One result row of either database.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `idx` as a `T`; a column of another type is a [`StoreError::Corrupt`].
    pub fn get<I: ColumnIndex, T: FromValue>(&self, idx: I) -> Result<T, StoreError> {
        let idx = idx.index();
        let value = match self {
            Row::Sqlite(row) => sqlite_value(row.get_ref(idx)?)?,
            Row::Postgres(row) => postgres_value(row, idx)?,
        };
        T::from_value(value).map_err(|why| StoreError::Corrupt(format!("column {idx}: {why}")))
    }

    /// Column `idx` as the database handed it out, whatever its type (a copied row).
    pub(super) fn value(&self, idx: usize) -> Result<Value<'_>, StoreError> {
        match self {
            Row::Sqlite(row) => sqlite_value(row.get_ref(idx)?),
            Row::Postgres(row) => postgres_value(row, idx),
        }
    }
}

fn sqlite_value(value: rusqlite::types::ValueRef<'_>) -> Result<Value<'_>, StoreError> {
    use rusqlite::types::ValueRef;
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| StoreError::Corrupt(format!("text that is not UTF-8: {e}")))?,
        ),
        ValueRef::Blob(b) => Value::Blob(b),
    })
}

fn postgres_value(row: &postgres::Row, idx: usize) -> Result<Value<'_>, StoreError> {
    let column = row
        .columns()
        .get(idx)
        .ok_or_else(|| StoreError::Corrupt(format!("no column {idx}")))?;
    let ty = column.type_().clone();
    let value = if ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(idx)?.map(Value::Int)
    } else if ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(idx)?
            .map(|i| Value::Int(i.into()))
    } else if ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(idx)?
            .map(|i| Value::Int(i.into()))
    } else if ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(idx)?
            .map(|b| Value::Int(b.into()))
    } else if ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(idx)?.map(Value::Real)
    } else if ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(idx)?
            .map(|f| Value::Real(f.into()))
    } else if ty == Type::NUMERIC {
        row.try_get::<_, Option<Numeric>>(idx)?.map(|n| n.0)
    } else if ty == Type::BYTEA {
        row.try_get::<_, Option<&[u8]>>(idx)?.map(Value::Blob)
    } else if <&str as FromSql>::accepts(&ty) {
        row.try_get::<_, Option<&str>>(idx)?.map(Value::Text)
    } else {
        return Err(StoreError::Corrupt(format!(
            "column {idx} ({}) has type {ty}, which the store does not read",
            column.name()
        )));
    };
    Ok(value.unwrap_or(Value::Null))
}

/// PostgreSQL's NUMERIC (what `sum()` of integers gives): an integer when it has no
/// fraction, else a real number.
struct Numeric(Value<'static>);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let word = |i: usize| -> Result<i16, Box<dyn Error + Sync + Send>> {
            raw.get(i * 2..i * 2 + 2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "a truncated NUMERIC".into())
        };
        let (digits, weight, sign, scale) = (word(0)?, word(1)?, word(2)? as u16, word(3)?);
        if sign == 0xC000 {
            return Err("NUMERIC NaN".into());
        }
        let mut value = 0f64;
        let mut integer: i128 = 0;
        for i in 0..usize::try_from(digits).unwrap_or(0) {
            let digit = word(4 + i)?;
            let power = i32::from(weight) - i as i32;
            value += f64::from(digit) * 10000f64.powi(power);
            if power >= 0 {
                integer = integer.saturating_add(i128::from(digit) * 10000i128.pow(power as u32));
            }
        }
        let negative = sign == 0x4000;
        let result = if scale == 0 {
            let integer = if negative { -integer } else { integer };
            Value::Int(i64::try_from(integer).map_err(|_| "NUMERIC beyond 64 bits")?)
        } else {
            Value::Real(if negative { -value } else { value })
        };
        Ok(Numeric(result))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// `sql` with SQLite's placeholders (`?1`, `?`) made PostgreSQL's (`$1`, `$n`). Quoted text
/// is left alone.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1;
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                let mut number = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    number.push(*d);
                    chars.next();
                }
                if number.is_empty() {
                    number = next.to_string();
                    next += 1;
                }
                out.push('$');
                out.push_str(&number);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_and_quoted_text_stays() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?1 AND c = '?' AND d IN (?2, ?10)"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $10)"
        );
        assert_eq!(to_postgres("VALUES (?, ?)"), "VALUES ($1, $2)");
    }

    #[test]
    fn a_missing_value_is_null_of_its_type() {
        assert!(matches!(None::<i64>.to_param(), Param::Null(Kind::Int)));
        assert!(matches!(None::<&str>.to_param(), Param::Null(Kind::Text)));
        assert!(matches!(Some("x").to_param(), Param::Text("x")));
        assert!(matches!(true.to_param(), Param::Int(1)));
    }

    #[test]
    fn columns_convert_or_say_why_not() {
        assert_eq!(Option::<i64>::from_value(Value::Null), Ok(None));
        assert_eq!(u32::from_value(Value::Int(7)), Ok(7));
        assert!(u32::from_value(Value::Int(-1)).is_err());
        assert_eq!(
            String::from_value(Value::Int(3)),
            Err("expected text, found an integer".to_string())
        );
    }

    #[test]
    fn numeric_sums_read_as_integers() {
        // 123456789 = 1|2345|6789 in base 10000: 3 digits, weight 2, positive, scale 0.
        let raw: Vec<u8> = [3i16, 2, 0, 0, 1, 2345, 6789]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        let Numeric(value) = Numeric::from_sql(&Type::NUMERIC, &raw).expect("numeric");
        assert!(matches!(value, Value::Int(123_456_789)));
    }
}
