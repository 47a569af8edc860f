//! A parsed ListKeys filter and order (the edge parses them; the store queries by them).
//!
//! The filter is the AIP-160 subset Keyward answers from indexed columns: a conjunction of
//! `field OP value` terms joined by `AND`, e.g.
//! `state = ENABLED AND tags.team = "payments" AND update_time > "2026-01-01T00:00:00Z"`.
//! Values may be quoted (`"..."`, with `\"` and `\\`) or bare words.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Key, KeySource, KeySpec, KeyState};

/// The fields a filter takes, as the error for an unknown field lists them.
pub const FILTER_FIELDS: &str =
    "state, virtual, key_spec, source, origin, display_name, alias, tags.<tag key>, aws_key_id, key_arn, update_time";

/// The longest filter text (bytes), and the most terms in one filter.
pub const MAX_FILTER_LEN: usize = 2048;
pub const MAX_FILTER_TERMS: usize = 16;

/// AWS's key origins (`OriginType`, AWS KMS API reference, CreateKey `Origin`).
const ORIGINS: [&str; 4] = ["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"];

/// A parsed ListKeys filter: every set field must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    pub state: Option<KeyState>,
    pub is_virtual: Option<bool>,
    pub key_spec: Option<KeySpec>,
    pub source: Option<KeySource>,
    /// AWS's `Origin` of a virtual key (`AWS_KMS`, `EXTERNAL`, ...); keys not in AWS have none.
    pub origin: Option<String>,
    pub display_name: Option<TextMatch>,
    /// A full alias name, `alias/...`.
    pub alias: Option<String>,
    /// Tag key → value; each must be on the key.
    pub tags: BTreeMap<String, String>,
    pub aws_key_id: Option<String>,
    pub key_arn: Option<String>,
    /// Bounds on update_time, all of which hold.
    pub update_time: Vec<(Cmp, OffsetDateTime)>,
}

/// How a text field matches: the whole value, or a prefix (`"prod-*"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextMatch {
    Exact(String),
    Prefix(String),
}

/// A comparison of a time field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// ListKeys `order_by`: one field, ascending unless ` desc`; ties go by key id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyOrder {
    pub by: KeyOrderField,
    pub descending: bool,
}

/// The fields keys can be ordered by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyOrderField {
    /// The key id (UUIDv7: the order Keyward recorded the keys in). The default.
    #[default]
    Id,
    DisplayName,
    CreateTime,
    UpdateTime,
}

/// Where a page of keys starts: after the key `id` whose sort value was `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCursor {
    pub value: SortValue,
    pub id: String,
}

/// The sort value of the last key of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortValue {
    /// Ordered by id: the id is the value.
    None,
    Text(String),
    /// Microseconds since the Unix epoch.
    Micros(i64),
}

/// Microseconds since the Unix epoch (how the store indexes key times).
pub fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

impl KeyOrder {
    /// Parses `order_by`: empty, or `display_name`, `create_time`, `update_time` (or `name`,
    /// the default), optionally followed by `desc` or `asc`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let fields = "display_name, create_time, update_time, name (optionally followed by \"desc\")";
        let (field, dir) = match words.as_slice() {
            [] => return Ok(Self::default()),
            [f] => (*f, None),
            [f, d] => (*f, Some(*d)),
            _ if text.contains(',') => return Err(format!("order by one field only; fields: {fields}")),
            _ => return Err(format!("{text:?} is not `field [desc]`; fields: {fields}")),
        };
        if field.contains(',') {
            return Err(format!("order by one field only; fields: {fields}"));
        }
        let by = match field {
            "name" => KeyOrderField::Id,
            "display_name" | "displayName" => KeyOrderField::DisplayName,
            "create_time" | "createTime" => KeyOrderField::CreateTime,
            "update_time" | "updateTime" => KeyOrderField::UpdateTime,
            _ => return Err(format!("cannot order by {field:?}; fields: {fields}")),
        };
        let descending = match dir.map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => {
                return Err(format!("{:?} is not a direction; use \"desc\" or \"asc\"", dir.unwrap_or_default()));
            }
        };
        Ok(Self { by, descending })
    }

    /// Where the page after `k` starts.
    pub fn cursor_of(&self, k: &Key) -> KeyCursor {
        let value = match self.by {
            KeyOrderField::Id => SortValue::None,
            KeyOrderField::DisplayName => SortValue::Text(k.display_name.clone()),
            KeyOrderField::CreateTime => SortValue::Micros(micros(k.create_time)),
            KeyOrderField::UpdateTime => SortValue::Micros(micros(k.update_time)),
        };
        KeyCursor { value, id: k.id.to_string() }
    }
}

/// One lexical token of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(Cmp),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, e @ ('"' | '\\'))) => s.push(e),
                            _ => {
                                return Err(format!(
                                    "a quoted value has a bad escape near byte {at}: use \\\" or \\\\"
                                ));
                            }
                        },
                        Some((_, c)) => s.push(c),
                        None => return Err(format!("the quoted value starting at byte {at} has no closing quote")),
                    }
                }
                out.push(Token::Quoted(s));
            }
            '=' | '<' | '>' | '!' => {
                chars.next();
                let eq = chars.peek().is_some_and(|&(_, n)| n == '=');
                let op = match (c, eq) {
                    ('=', _) => Cmp::Eq,
                    ('<', false) => Cmp::Lt,
                    ('<', true) => Cmp::Le,
                    ('>', false) => Cmp::Gt,
                    ('>', true) => Cmp::Ge,
                    _ => {
                        return Err(format!(
                            "operator {c:?} is not supported; use =, <, <=, >, >= (terms joined by AND)"
                        ));
                    }
                };
                if eq && c != '=' {
                    chars.next();
                }
                out.push(Token::Op(op));
            }
            '(' | ')' => return Err("parentheses are not supported: terms are joined by AND only".into()),
            _ => {
                let mut s = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '"' | '=' | '<' | '>' | '!' | '(' | ')') {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(Token::Word(s));
            }
        }
    }
    Ok(out)
}

impl KeyFilter {
    /// Parses the filter text; errors name the offending term and what it takes. Limits:
    /// [`MAX_FILTER_LEN`] bytes, [`MAX_FILTER_TERMS`] terms, each field once (`update_time`
    /// up to twice, as a range; `tags.<key>` once per tag key).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut f = Self::default();
        if text.len() > MAX_FILTER_LEN {
            return Err(format!("is {} bytes; at most {MAX_FILTER_LEN}", text.len()));
        }
        let toks = tokens(text)?;
        if toks.is_empty() {
            return Ok(f);
        }
        let mut terms = 0;
        let mut rest = toks.as_slice();
        loop {
            let (field, op, value, tail) = match rest {
                [Token::Word(field), Token::Op(op), Token::Word(v) | Token::Quoted(v), tail @ ..] => {
                    (field.as_str(), *op, v.as_str(), tail)
                }
                [Token::Word(w), ..] if w == "OR" || w == "NOT" => {
                    return Err(format!("{w} is not supported: terms are joined by AND only"));
                }
                _ => {
                    return Err(format!(
                        "expected `field = VALUE` at {:?}; fields: {FILTER_FIELDS} (terms joined by AND)",
                        describe(rest)
                    ));
                }
            };
            terms += 1;
            if terms > MAX_FILTER_TERMS {
                return Err(format!("has more than {MAX_FILTER_TERMS} terms"));
            }
            f.term(field, op, value)?;
            match tail {
                [] => return Ok(f),
                [Token::Word(and), more @ ..] if and == "AND" && !more.is_empty() => rest = more,
                [Token::Word(and)] if and == "AND" => return Err("ends with AND: a term must follow".into()),
                _ => return Err(format!("expected AND before {:?} (terms are joined by AND)", describe(tail))),
            }
        }
    }

    fn term(&mut self, field: &str, op: Cmp, value: &str) -> Result<(), String> {
        let bad = |values: Vec<&str>| format!("{value:?} is not a {field}; {field} takes {}", values.join(", "));
        let twice = || format!("{field} appears twice; a key has one {field} (terms are joined by AND)");
        // An enum value may carry its wire prefix (`KEY_STATE_ENABLED`) or not (`ENABLED`).
        let bare = |prefix: &str| value.strip_prefix(prefix).unwrap_or(value).to_owned();
        if field == "update_time" || field == "updateTime" {
            let t = OffsetDateTime::parse(value, &Rfc3339)
                .map_err(|_| format!("{value:?} is not an RFC 3339 time such as \"2026-01-31T12:00:00Z\""))?;
            if self.update_time.len() == 2 {
                return Err("update_time appears more than twice; give at most a range (> and <)".into());
            }
            self.update_time.push((op, t));
            return Ok(());
        }
        if op != Cmp::Eq {
            return Err(format!("{field} takes `=` only (<, > compare update_time)"));
        }
        // No stored name, alias, tag or id holds one (and PostgreSQL text cannot hold NUL).
        if field.chars().chain(value.chars()).any(char::is_control) {
            return Err(format!("{field}: a term must not contain control characters"));
        }
        let text = |max: usize| -> Result<String, String> {
            if value.is_empty() || value.len() > max {
                return Err(format!("{field} takes a value of 1 to {max} bytes"));
            }
            Ok(value.to_owned())
        };
        if let Some(tag) = field.strip_prefix("tags.") {
            // AWS's tag limits: keys 1-128, values 0-256 characters (TagResource).
            if tag.is_empty() || tag.len() > 128 {
                return Err(format!(
                    "a tag key is 1 to 128 bytes, this one {} (tags.<tag key> = \"value\")",
                    tag.len()
                ));
            }
            if value.len() > 256 {
                return Err(format!("{field} takes a value of at most 256 bytes"));
            }
            if self.tags.insert(tag.to_owned(), value.to_owned()).is_some() {
                return Err(format!("{field} appears twice"));
            }
            return Ok(());
        }
        match field {
            "state" => {
                let names = || KeyState::ALL.iter().map(|s| s.name()).collect();
                let v = KeyState::from_name(&bare("KEY_STATE_")).ok_or_else(|| bad(names()))?;
                self.state.replace(v).map_or(Ok(()), |_| Err(twice()))
            }
            "virtual" => {
                let v = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(vec!["true", "false"])),
                };
                self.is_virtual.replace(v).map_or(Ok(()), |_| Err(twice()))
            }
            "key_spec" | "keySpec" => {
                let names = || {
                    KeySpec::AWS
                        .iter()
                        .map(|s| s.api_name())
                        .chain(["AES_128", "AES_192", "AES_256", "OTHER"])
                        .collect()
                };
                let v = KeySpec::from_api_name(&bare("KEY_SPEC_")).ok_or_else(|| bad(names()))?;
                self.key_spec.replace(v).map_or(Ok(()), |_| Err(twice()))
            }
            "source" => {
                let names = || vec!["AWS_NATIVE", "KEYWARD", "IMPORTED"];
                let v = KeySource::from_name(&bare("KEY_SOURCE_")).ok_or_else(|| bad(names()))?;
                self.source.replace(v).map_or(Ok(()), |_| Err(twice()))
            }
            "origin" | "aws.origin" => {
                let v = ORIGINS.iter().find(|o| **o == value).ok_or_else(|| bad(ORIGINS.to_vec()))?;
                self.origin.replace((*v).to_owned()).map_or(Ok(()), |_| Err(twice()))
            }
            "display_name" | "displayName" => {
                // Display names are up to 256 characters (validate_display_name), in any script.
                let n = value.chars().count();
                if n == 0 || n > 256 {
                    return Err(format!("display_name takes a value of 1 to 256 characters, not {n}"));
                }
                let v = value.to_owned();
                let m = match v.strip_suffix('*') {
                    Some(p) if !p.contains('*') => TextMatch::Prefix(p.to_owned()),
                    _ if v.contains('*') => {
                        return Err("display_name takes one `*`, at the end (a prefix: \"prod-*\")".into());
                    }
                    _ => TextMatch::Exact(v),
                };
                self.display_name.replace(m).map_or(Ok(()), |_| Err(twice()))
            }
            "alias" | "aws.aliases" => {
                let v = text(256)?;
                let v = if v.starts_with("alias/") { v } else { format!("alias/{v}") };
                self.alias.replace(v).map_or(Ok(()), |_| Err("alias appears twice".into()))
            }
            "aws_key_id" | "aws.aws_key_id" | "awsKeyId" => {
                let v = text(2048)?;
                self.aws_key_id.replace(v).map_or(Ok(()), |_| Err(twice()))
            }
            "key_arn" | "aws.key_arn" | "keyArn" => {
                let v = text(2048)?;
                if !v.starts_with("arn:") {
                    return Err(format!("{value:?} is not a key ARN (arn:aws:kms:<region>:<account>:key/<id>)"));
                }
                self.key_arn.replace(v).map_or(Ok(()), |_| Err(twice()))
            }
            _ => Err(format!("cannot filter on {field:?}; fields: {FILTER_FIELDS} (`field = VALUE` joined by AND)")),
        }
    }
}

/// The start of what is left of a filter, for an error.
fn describe(rest: &[Token]) -> String {
    let words: Vec<String> = rest
        .iter()
        .take(3)
        .map(|t| match t {
            Token::Word(w) => w.clone(),
            Token::Quoted(q) => format!("\"{q}\""),
            Token::Op(c) => match c {
                Cmp::Eq => "=",
                Cmp::Lt => "<",
                Cmp::Le => "<=",
                Cmp::Gt => ">",
                Cmp::Ge => ">=",
            }
            .to_owned(),
        })
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert_eq!(KeyFilter::parse("").unwrap(), KeyFilter::default());
        let f = KeyFilter::parse("state = ENABLED AND virtual = true AND key_spec = RSA_2048").unwrap();
        assert_eq!(f.state, Some(KeyState::Enabled));
        assert_eq!(f.is_virtual, Some(true));
        assert_eq!(f.key_spec, Some(KeySpec::Rsa2048));
        let e = KeyFilter::parse("state = ON").unwrap_err();
        assert!(e.contains("ENABLED, DISABLED, PENDING_DELETION"), "{e}");
        let e = KeyFilter::parse("color = red").unwrap_err();
        assert!(e.contains("fields: state, virtual, key_spec, source"), "{e}");
        assert!(KeyFilter::parse("virtual = yes").unwrap_err().contains("true, false"));
        assert!(KeyFilter::parse("key_spec = RSA_1").unwrap_err().contains("RSA_2048"));
        assert_eq!(KeyFilter::parse("key_spec = OTHER").unwrap().key_spec, Some(KeySpec::Other));
        let wire = KeyFilter::parse(
            "state = KEY_STATE_DISABLED AND key_spec = KEY_SPEC_AES_256 AND source = KEY_SOURCE_KEYWARD",
        )
        .unwrap();
        assert_eq!(wire.state, Some(KeyState::Disabled));
        assert_eq!(wire.key_spec, Some(KeySpec::Aes256));
        assert_eq!(wire.source, Some(KeySource::Keyward));
        assert!(KeyFilter::parse("state").is_err());
    }

    #[test]
    fn text_tag_and_time_terms() {
        let f = KeyFilter::parse(
            r#"display_name = "prod-*" AND alias = orders AND tags.team = "pay ments" AND tags.env=prod AND origin = EXTERNAL AND update_time >= "2026-01-01T00:00:00Z" AND update_time < "2026-02-01T00:00:00Z""#,
        )
        .unwrap();
        assert_eq!(f.display_name, Some(TextMatch::Prefix("prod-".into())));
        assert_eq!(f.alias.as_deref(), Some("alias/orders"));
        assert_eq!(f.tags.get("team").map(String::as_str), Some("pay ments"));
        assert_eq!(f.tags.get("env").map(String::as_str), Some("prod"));
        assert_eq!(f.origin.as_deref(), Some("EXTERNAL"));
        assert_eq!(f.update_time.len(), 2);
        assert_eq!(f.update_time[0].0, Cmp::Ge);
        assert_eq!(f.update_time[1].0, Cmp::Lt);
        // " AND " inside a quoted value is part of the value.
        let q = KeyFilter::parse(r#"display_name = "a AND b""#).unwrap();
        assert_eq!(q.display_name, Some(TextMatch::Exact("a AND b".into())));
        let arn = "arn:aws:kms:eu-west-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(KeyFilter::parse(&format!("key_arn = {arn}")).unwrap().key_arn.as_deref(), Some(arn));
    }

    #[test]
    fn bad_filters_say_why() {
        let cases = [
            ("state = ENABLED AND state = DISABLED", "appears twice"),
            ("state = ENABLED OR state = DISABLED", "expected AND"),
            ("NOT state = ENABLED", "AND only"),
            ("state = ENABLED AND", "ends with AND"),
            ("state != ENABLED", "not supported"),
            ("state > ENABLED", "takes `=` only"),
            ("(state = ENABLED)", "parentheses"),
            ("display_name = \"a*b\"", "at the end"),
            ("display_name = \"\"", "1 to 256 characters"),
            ("display_name = \"pay\u{0}*\"", "control characters"),
            ("tags.a\u{0} = x", "control characters"),
            ("update_time > yesterday", "RFC 3339"),
            (
                "update_time > \"2026-01-01T00:00:00Z\" AND update_time < \"2026-02-01T00:00:00Z\" AND update_time = \"2026-01-05T00:00:00Z\"",
                "more than twice",
            ),
            ("key_arn = 1234", "not a key ARN"),
            ("origin = AWS", "AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE"),
            ("tags. = x", "tag key is 1 to 128"),
            ("display_name = \"unclosed", "no closing quote"),
            ("color = red", "update_time"),
        ];
        for (text, says) in cases {
            let e = KeyFilter::parse(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        let long = format!("display_name = \"{}\"", "x".repeat(MAX_FILTER_LEN));
        assert!(KeyFilter::parse(&long).unwrap_err().contains("at most 2048"));
        let many: Vec<String> = (0..MAX_FILTER_TERMS).map(|i| format!("tags.t{i} = x")).collect();
        assert_eq!(KeyFilter::parse(&many.join(" AND ")).unwrap().tags.len(), MAX_FILTER_TERMS);
        let too_many: Vec<String> = (0..=MAX_FILTER_TERMS).map(|i| format!("tags.t{i} = x")).collect();
        assert!(KeyFilter::parse(&too_many.join(" AND ")).unwrap_err().contains("more than 16 terms"));
    }

    #[test]
    fn orders() {
        assert_eq!(KeyOrder::parse("").unwrap(), KeyOrder::default());
        let o = KeyOrder::parse("display_name desc").unwrap();
        assert_eq!((o.by, o.descending), (KeyOrderField::DisplayName, true));
        assert_eq!(KeyOrder::parse("update_time").unwrap().by, KeyOrderField::UpdateTime);
        assert_eq!(KeyOrder::parse("createTime ASC").unwrap().by, KeyOrderField::CreateTime);
        assert!(KeyOrder::parse("color").unwrap_err().contains("display_name, create_time"));
        assert!(KeyOrder::parse("display_name, update_time").unwrap_err().contains("one field"));
        assert!(KeyOrder::parse("display_name sideways").unwrap_err().contains("desc"));
    }
}
