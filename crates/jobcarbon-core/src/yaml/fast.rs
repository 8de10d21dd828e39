//! The fast path: a thin serde `Deserializer` straight over `granit-parser` events (the parser
//! serde-saphyr itself uses, with the same parser options), for the plain subset of YAML that
//! scenario and config files are written in.
//!
//! It never decides that a document is wrong. Whatever it is not sure about (anchors, aliases,
//! tags, merge keys, YAML 1.1 spellings such as `yes` or `0x1F`, null where a string is
//! wanted, deep nesting, several documents) and every error, the parser's or a type's, makes it
//! give up ([`Bail`]); the caller then parses the same text with serde-saphyr, which accepts or
//! rejects it and locates the error exactly as before. So on success it must produce exactly
//! what serde-saphyr would, and it stays conservative to that end.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_saphyr::granit_parser::{self, Event, Parser, ScalarStyle, StrInput};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Deeper documents go to serde-saphyr, whose budget allows 64 levels.
const MAX_DEPTH: usize = 48;
/// serde-saphyr caps scalar (and comment) text at 64 MiB; larger inputs go to it.
const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

/// `text` as `T` if the fast path is sure of it; `None` means "ask serde-saphyr".
pub(super) fn try_from_str<T: DeserializeOwned>(text: &str) -> Option<T> {
    if text.len() >= MAX_INPUT_BYTES {
        return None;
    }
    let mut events = Events::new(text);
    events.document_start().ok()?;
    let value = T::deserialize(&mut events).ok()?;
    events.document_end().ok()?;
    Some(value)
}

/// "Not sure": the caller falls back to serde-saphyr. Carries no message on purpose.
#[derive(Debug)]
pub(super) struct Bail;

impl fmt::Display for Bail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("left to the full parser")
    }
}

impl std::error::Error for Bail {}

impl de::Error for Bail {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Bail
    }
}

/// What a plain (unquoted) scalar means under serde-saphyr's defaults, where the fast path is
/// sure; `Unsure` for every spelling it leaves to serde-saphyr.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plain {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text,
    Unsure,
}

fn is_nullish(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn classify(s: &str) -> Plain {
    match s {
        _ if is_nullish(s) => return Plain::Null,
        "true" => return Plain::Bool(true),
        "false" => return Plain::Bool(false),
        _ => {}
    }
    // YAML 1.1 booleans in other spellings (serde-saphyr reads `yes`, `On`, `N`… as bools).
    let yaml11_bool = ["true", "false", "yes", "no", "y", "n", "on", "off"];
    if yaml11_bool.iter().any(|b| s.eq_ignore_ascii_case(b)) {
        return Plain::Unsure;
    }
    if s.starts_with('+') {
        return Plain::Unsure;
    }
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let lower = unsigned.get(..3).map(str::to_ascii_lowercase);
    if unsigned.is_empty()
        || unsigned.starts_with('.')
        || matches!(lower.as_deref(), Some("inf" | "nan"))
    {
        return Plain::Unsure;
    }
    if !unsigned.as_bytes()[0].is_ascii_digit() {
        return Plain::Text;
    }
    numeric(s, unsigned)
}

/// A scalar that starts with a digit: a strict decimal number, clearly text, or unsure.
fn numeric(s: &str, unsigned: &str) -> Plain {
    let bytes = unsigned.as_bytes();
    // Radix prefixes, underscores and sexagesimal colons are YAML 1.1 number spellings.
    if s.contains(['_', ':'])
        || (bytes[0] == b'0' && bytes.get(1).is_some_and(u8::is_ascii_alphabetic))
    {
        return Plain::Unsure;
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        // A letter that no number has (`700W`, `5m`, `1d`): text, as serde-saphyr reads it.
        return Plain::Text;
    }
    let leading_zero = bytes.len() > 1 && bytes[0] == b'0' && bytes[1].is_ascii_digit();
    if leading_zero {
        return Plain::Unsure;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return match s.starts_with('-') {
            true => s.parse().map_or(Plain::Unsure, Plain::Signed),
            false => s.parse().map_or(Plain::Unsure, Plain::Unsigned),
        };
    }
    if strict_float(unsigned) {
        return match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Plain::Float(v),
            _ => Plain::Unsure,
        };
    }
    Plain::Unsure
}

/// `D+ [. D+] [(e|E) [+|-] D+]` with a fraction or an exponent.
fn strict_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(mantissa) && exponent.is_some(),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// The event stream, comments skipped, one event of look-ahead.
struct Events<'de> {
    parser: Parser<'de, StrInput<'de>>,
    peeked: Option<Event<'de>>,
    depth: usize,
}

type Result<T> = std::result::Result<T, Bail>;

impl<'de> Events<'de> {
    fn new(text: &'de str) -> Self {
        // The options serde-saphyr derives from its default budget (`Budget::parser_options`).
        let budget = serde_saphyr::Budget::default();
        let mut options = granit_parser::Options::default();
        options.simple_key_max_lookahead = budget.simple_key_max_lookahead;
        options.flow_nesting_limit = budget.flow_nesting_limit;
        options.block_nesting_limit = options
            .block_nesting_limit
            .max(budget.max_depth.saturating_add(1));
        options.emit_comments = true;
        options.max_buffered_comment_events = budget.max_buffered_comment_events;
        Self {
            parser: Parser::new_from_str_with_options(text, options),
            peeked: None,
            depth: 0,
        }
    }

    fn next(&mut self) -> Result<Event<'de>> {
        if let Some(event) = self.peeked.take() {
            return Ok(event);
        }
        loop {
            match self.parser.next_event() {
                Some(Ok((Event::Comment(..), _))) => {}
                Some(Ok((event, _))) => return Ok(event),
                Some(Err(_)) | None => return Err(Bail),
            }
        }
    }

    fn peek(&mut self) -> Result<&Event<'de>> {
        if self.peeked.is_none() {
            self.peeked = Some(self.next()?);
        }
        self.peeked.as_ref().ok_or(Bail)
    }

    /// Stream start and one document start without a `%YAML` directive, not empty.
    fn document_start(&mut self) -> Result<()> {
        match (self.next()?, self.next()?) {
            (Event::StreamStart, Event::DocumentStart(_, None)) => {}
            _ => return Err(Bail),
        }
        match self.peek()? {
            Event::DocumentEnd => Err(Bail),
            _ => Ok(()),
        }
    }

    /// The document ends, and so does the stream: one document only.
    fn document_end(&mut self) -> Result<()> {
        match (self.next()?, self.next()?) {
            (Event::DocumentEnd, Event::StreamEnd) => Ok(()),
            _ => Err(Bail),
        }
    }

    /// A plain or quoted scalar without anchor or tag, taken; anything else bails.
    fn scalar(&mut self) -> Result<(Cow<'de, str>, bool)> {
        match self.next()? {
            Event::Scalar(text, style, 0, None) => Ok((text, style == ScalarStyle::Plain)),
            _ => Err(Bail),
        }
    }

    /// The text of a scalar that serde-saphyr gives to a string target.
    fn string(&mut self) -> Result<Cow<'de, str>> {
        match self.scalar()? {
            (text, true) if is_nullish(&text) => Err(Bail),
            (text, _) => Ok(text),
        }
    }

    /// A plain scalar's meaning, where sure.
    fn plain(&mut self) -> Result<Plain> {
        match self.scalar()? {
            (text, true) => Ok(classify(&text)),
            (_, false) => Err(Bail),
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Bail);
        }
        Ok(())
    }

    fn seq<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.next()? {
            Event::SequenceStart(_, 0, None) => {}
            _ => return Err(Bail),
        }
        self.enter()?;
        let mut access = Seq {
            events: self,
            done: false,
        };
        let value = visitor.visit_seq(&mut access)?;
        if !access.done {
            return Err(Bail); // the visitor stopped early; serde-saphyr decides
        }
        self.depth -= 1;
        Ok(value)
    }

    fn map<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.next()? {
            Event::MappingStart(_, 0, None) => {}
            _ => return Err(Bail),
        }
        self.enter()?;
        let mut access = Map {
            events: self,
            keys: Keys::default(),
            done: false,
        };
        let value = visitor.visit_map(&mut access)?;
        if !access.done {
            return Err(Bail);
        }
        self.depth -= 1;
        Ok(value)
    }
}

fn visit_text<'de, V: Visitor<'de>>(text: Cow<'de, str>, visitor: V) -> Result<V::Value> {
    match text {
        Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
        Cow::Owned(s) => visitor.visit_string(s),
    }
}

macro_rules! integer {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let value: $ty = match self.plain()? {
                Plain::Unsigned(n) => n.try_into().map_err(|_| Bail)?,
                Plain::Signed(n) => n.try_into().map_err(|_| Bail)?,
                _ => return Err(Bail),
            };
            visitor.$visit(value)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Events<'de> {
    type Error = Bail;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek()? {
            Event::SequenceStart(..) => return self.seq(visitor),
            Event::MappingStart(..) => return self.map(visitor),
            _ => {}
        }
        let (text, plain) = self.scalar()?;
        if !plain {
            return visit_text(text, visitor);
        }
        match classify(&text) {
            Plain::Null => visitor.visit_unit(),
            Plain::Bool(b) => visitor.visit_bool(b),
            Plain::Unsigned(n) => visitor.visit_u64(n),
            Plain::Signed(n) => visitor.visit_i64(n),
            Plain::Float(x) => visitor.visit_f64(x),
            Plain::Text => visit_text(text, visitor),
            Plain::Unsure => Err(Bail),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.plain()? {
            Plain::Bool(b) => visitor.visit_bool(b),
            _ => Err(Bail),
        }
    }

    integer! {
        deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32, deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64,
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.plain()? {
            Plain::Float(x) => visitor.visit_f64(x),
            // Exact: the fast path only takes integers up to 2^53 as floats.
            Plain::Unsigned(n) if n < 1 << 53 => visitor.visit_f64(n as f64),
            Plain::Signed(n) if n.unsigned_abs() < 1 << 53 => visitor.visit_f64(n as f64),
            _ => Err(Bail),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let text = self.string()?;
        visit_text(text, visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Event::Scalar(text, ScalarStyle::Plain, 0, None) = self.peek()?
            && is_nullish(text)
        {
            self.next()?;
            return visitor.visit_none();
        }
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.plain()? {
            Plain::Null => visitor.visit_unit(),
            _ => Err(Bail),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.seq(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.map(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.map(visitor)
    }

    /// Unit variants written as a scalar (`type: model`); anything else bails.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let variant = match self.scalar()? {
            (text, true) if classify(&text) != Plain::Text => return Err(Bail),
            (text, _) => text,
        };
        visitor.visit_enum(UnitVariant(variant))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    // Rare targets whose YAML readings the fast path does not mirror.
    serde::forward_to_deserialize_any! { i128 u128 f32 char bytes byte_buf }
}

struct Seq<'a, 'de> {
    events: &'a mut Events<'de>,
    done: bool,
}

impl<'de> SeqAccess<'de> for Seq<'_, 'de> {
    type Error = Bail;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.done {
            return Ok(None);
        }
        if let Event::SequenceEnd = self.events.peek()? {
            self.events.next()?;
            self.done = true;
            return Ok(None);
        }
        seed.deserialize(&mut *self.events).map(Some)
    }
}

/// Keys seen in one mapping: duplicates bail (serde-saphyr rejects them).
#[derive(Default)]
struct Keys<'de> {
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

impl<'de> Keys<'de> {
    const FEW: usize = 16;

    /// False if `key` was seen before.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if self.few.len() < Self::FEW {
            if self.few.contains(&key) {
                return false;
            }
            self.few.push(key);
            return true;
        }
        if self.many.is_empty() {
            self.many.extend(self.few.iter().cloned());
        }
        self.many.insert(key)
    }
}

struct Map<'a, 'de> {
    events: &'a mut Events<'de>,
    keys: Keys<'de>,
    done: bool,
}

impl<'de> MapAccess<'de> for Map<'_, 'de> {
    type Error = Bail;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.done {
            return Ok(None);
        }
        if let Event::MappingEnd = self.events.peek()? {
            self.events.next()?;
            self.done = true;
            return Ok(None);
        }
        // Keys are text: plain keys that read as null, bool or number, and merge keys, bail.
        let key = match self.events.scalar()? {
            (text, true) if classify(&text) != Plain::Text || text == "<<" => return Err(Bail),
            (text, _) => text,
        };
        if !self.keys.insert(key.clone()) {
            return Err(Bail);
        }
        seed.deserialize(Key(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.events)
    }
}

/// A mapping key: its text, whatever the target asks for (as serde-saphyr's key deserializer).
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserializer<'de> for Key<'de> {
    type Error = Bail;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visit_text(self.0, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// An enum written as a scalar: a unit variant by name.
struct UnitVariant<'de>(Cow<'de, str>);

impl<'de> EnumAccess<'de> for UnitVariant<'de> {
    type Error = Bail;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let name: de::value::StrDeserializer<'_, Bail> = self.0.as_ref().into_deserializer();
        let value = seed.deserialize(name)?;
        Ok((value, self))
    }
}

impl<'de> VariantAccess<'de> for UnitVariant<'de> {
    type Error = Bail;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value> {
        Err(Bail)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value> {
        Err(Bail)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value> {
        Err(Bail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_read_as_serde_saphyr_reads_them() {
        for (text, expected) in [
            ("", Plain::Null),
            ("~", Plain::Null),
            ("NULL", Plain::Null),
            ("true", Plain::Bool(true)),
            ("false", Plain::Bool(false)),
            ("20", Plain::Unsigned(20)),
            ("-3", Plain::Signed(-3)),
            ("0", Plain::Unsigned(0)),
            ("0.5", Plain::Float(0.5)),
            ("-1.25e3", Plain::Float(-1250.0)),
            ("2E-2", Plain::Float(0.02)),
            ("700W", Plain::Text),
            ("1d", Plain::Text),
            ("10.3t", Plain::Text),
            ("120g/h", Plain::Text),
            ("-3y", Plain::Text),
            ("2 furlongs", Plain::Text),
            ("model", Plain::Text),
            ("j17", Plain::Text),
        ] {
            assert_eq!(classify(text), expected, "{text:?}");
        }
    }

    #[test]
    fn yaml_1_1_and_odd_spellings_are_left_to_serde_saphyr() {
        for text in [
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "N",
            "True",
            "FALSE",
            "+5",
            ".5",
            "5.",
            "-.inf",
            ".NaN",
            "inf",
            "nan",
            "-Infinity",
            "0x1F",
            "0o17",
            "0b101",
            "010",
            "1_000",
            "1:30",
            "2026-12-01",
            "1e",
            "1.2.3",
            "99999999999999999999",
            "1e999",
            "-",
        ] {
            assert_eq!(classify(text), Plain::Unsure, "{text:?}");
        }
    }
}
