//! A parsed ListKeys filter (the edge parses it; the store queries by it).

use super::{KeySource, KeySpec, KeyState};

/// A parsed ListKeys filter: a conjunction of `field = VALUE` terms over
/// `state`, `virtual`, `key_spec` and `source`, e.g. `state = ENABLED AND virtual = true`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    pub state: Option<KeyState>,
    pub is_virtual: Option<bool>,
    pub key_spec: Option<KeySpec>,
    pub source: Option<KeySource>,
}

impl KeyFilter {
    /// Parses the filter text; errors name the offending term.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut f = Self::default();
        let text = text.trim();
        if text.is_empty() {
            return Ok(f);
        }
        for term in text.split(" AND ") {
            let Some((field, value)) = term.split_once('=') else {
                return Err(format!("{term:?} is not `field = VALUE`"));
            };
            let (field, value) = (field.trim(), value.trim().trim_matches('"'));
            let bad = || format!("{value:?} is not a valid {field}");
            match field {
                "state" => f.state = Some(KeyState::from_name(value).ok_or_else(bad)?),
                "virtual" => {
                    f.is_virtual = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad()),
                    })
                }
                "key_spec" => f.key_spec = Some(KeySpec::from_api_name(value).ok_or_else(bad)?),
                "source" => f.source = Some(KeySource::from_name(value).ok_or_else(bad)?),
                _ => return Err(format!("cannot filter on {field:?}; use state, virtual, key_spec or source")),
            }
        }
        Ok(f)
    }
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
        assert!(KeyFilter::parse("state = ON").is_err());
        assert!(KeyFilter::parse("color = red").is_err());
        assert!(KeyFilter::parse("state").is_err());
    }
}
