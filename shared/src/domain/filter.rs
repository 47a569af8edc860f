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
            let bad = |values: Vec<&str>| format!("{value:?} is not a {field}; {field} takes {}", values.join(", "));
            // An enum value may carry its wire prefix (`KEY_STATE_ENABLED`) or not (`ENABLED`).
            let bare = |prefix: &str| value.strip_prefix(prefix).unwrap_or(value).to_owned();
            match field {
                "state" => {
                    let names = || KeyState::ALL.iter().map(|s| s.name()).collect();
                    f.state = Some(KeyState::from_name(&bare("KEY_STATE_")).ok_or_else(|| bad(names()))?)
                }
                "virtual" => {
                    f.is_virtual = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(vec!["true", "false"])),
                    })
                }
                "key_spec" => {
                    let names = || {
                        KeySpec::AWS
                            .iter()
                            .map(|s| s.api_name())
                            .chain(["AES_128", "AES_192", "AES_256", "OTHER"])
                            .collect()
                    };
                    f.key_spec = Some(KeySpec::from_api_name(&bare("KEY_SPEC_")).ok_or_else(|| bad(names()))?)
                }
                "source" => {
                    let names = || vec!["AWS_NATIVE", "KEYWARD", "IMPORTED"];
                    f.source = Some(KeySource::from_name(&bare("KEY_SOURCE_")).ok_or_else(|| bad(names()))?)
                }
                _ => {
                    return Err(format!(
                        "cannot filter on {field:?}; fields: state, virtual, key_spec, source (`field = VALUE` joined by AND)"
                    ));
                }
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
}
