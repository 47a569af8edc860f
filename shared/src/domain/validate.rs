//! Parsing of caller input into proven types, with AWS's own rules where AWS has them.
//! Rules: https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateAlias.html,
//! https://docs.aws.amazon.com/kms/latest/APIReference/API_Tag.html.

use std::collections::BTreeMap;

/// One bad field of a request: `field` is the request path (`group.aws_kms.region`),
/// `description` says what is wrong without echoing secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// An AWS region code such as `eu-west-1` or `us-gov-west-1`: lowercase ASCII letters and
/// digits in dash-separated parts, the last one a number, at least three parts.
/// Availability zones (`us-east-1a`), upper case and empty strings are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region(String);

impl Region {
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('-').collect();
        let ok = parts.len() >= 3
            && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
            && parts[..parts.len() - 1].iter().all(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
            && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        if ok && s.len() <= 32 {
            Ok(Self(s.to_owned()))
        } else if s.is_empty() {
            Err("required, e.g. eu-west-1".to_owned())
        } else {
            Err(format!("{s:?} is not an AWS region code such as eu-west-1 (lowercase, no availability-zone letter)"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The region's public AWS KMS endpoint: `https://kms.<region>.amazonaws.com`, and
    /// `https://kms.<region>.amazonaws.com.cn` in the China partition (`cn-*` regions).
    /// Source: https://docs.aws.amazon.com/general/latest/gr/kms.html
    pub fn public_kms_endpoint(&self) -> String {
        let suffix = if self.0.starts_with("cn-") { ".cn" } else { "" };
        format!("https://kms.{}.amazonaws.com{suffix}", self.0)
    }
}

/// A custom AWS KMS endpoint: an absolute `http://` or `https://` URL with a host (and an
/// optional port), without user info. Errors never quote the URL: a malformed one may still
/// carry credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
        let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
        if authority.is_some_and(|a| a.contains('@')) || (rest.is_none() && s.contains('@')) {
            return Err("must not contain user info (credentials go in access_key_id and secret_access_key)".to_owned());
        }
        let (Some(rest), Some(authority)) = (rest, authority) else {
            return Err("must start with http:// or https://".to_owned());
        };
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("not a URL".to_owned());
        }
        let not_url = || Err("not a URL".to_owned());
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let Some((h, after)) = v6.split_once(']') else { return not_url() };
                if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
                    return not_url();
                }
                match after {
                    "" => (h, None),
                    p => match p.strip_prefix(':') {
                        Some(p) => (h, Some(p)),
                        None => return not_url(),
                    },
                }
            }
            None => {
                let (h, p) = match authority.split_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (authority, None),
                };
                if !h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
                    return not_url();
                }
                (h, p)
            }
        };
        if host.is_empty() {
            return Err("has no host".to_owned());
        }
        if let Some(p) = port
            && !(p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0))
        {
            return Err("has a port that is not a number from 1 to 65535".to_owned());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An AWS KMS alias name: `alias/` then 1–250 characters of `[A-Za-z0-9/_-]`, 256 in all,
/// not under `alias/aws/` (reserved for AWS-managed keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Alias(String);

impl Alias {
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some(rest) = s.strip_prefix("alias/") else {
            return Err(format!("{s:?} must start with alias/"));
        };
        if rest.is_empty() {
            return Err("alias/ needs a name after it".to_owned());
        }
        if s.len() > 256 {
            return Err(format!("is {} characters; at most 256", s.len()));
        }
        if s.starts_with("alias/aws/") {
            return Err(format!("{s:?}: alias/aws/ is reserved for AWS-managed keys"));
        }
        if let Some(c) = rest.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'))) {
            return Err(format!("{s:?} has {c:?}; allowed are A-Z a-z 0-9 / _ -"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Key tags as AWS allows them: at most 50, keys 1–128 characters without an `aws:` prefix
/// (any case), values 0–256 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    pub const MAX_TAGS: usize = 50;

    /// Checks every tag; returns one violation per bad tag, `field` = `{field}[{tag key}]`.
    pub fn parse(tags: BTreeMap<String, String>, field: &str) -> Result<Self, Vec<FieldViolation>> {
        let mut bad = Vec::new();
        if tags.len() > Self::MAX_TAGS {
            bad.push(FieldViolation::new(field, format!("{} tags; at most {}", tags.len(), Self::MAX_TAGS)));
        }
        for (k, v) in &tags {
            let f = format!("{field}[{k}]");
            let klen = k.chars().count();
            if klen == 0 || klen > 128 {
                bad.push(FieldViolation::new(&f, format!("tag key is {klen} characters; 1 to 128 allowed")));
            }
            if k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
                bad.push(FieldViolation::new(&f, "tag keys starting with aws: are reserved for AWS"));
            }
            let vlen = v.chars().count();
            if vlen > 256 {
                bad.push(FieldViolation::new(&f, format!("tag value is {vlen} characters; at most 256")));
            }
        }
        if bad.is_empty() { Ok(Self(tags)) } else { Err(bad) }
    }

    /// Tags as they came from AWS or the database (already valid there).
    pub fn trusted(tags: BTreeMap<String, String>) -> Self {
        Self(tags)
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

/// A display name: 1–256 characters, no control characters, not only whitespace.
pub fn validate_display_name(s: &str, max: usize) -> Result<(), String> {
    let n = s.chars().count();
    if s.trim().is_empty() {
        Err("required".to_owned())
    } else if n > max {
        Err(format!("is {n} characters; at most {max}"))
    } else if s.chars().any(char::is_control) {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        for ok in ["eu-west-1", "us-east-1", "us-gov-west-1", "ap-southeast-3", "cn-north-1"] {
            assert!(Region::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "us-east-1a", "EU-WEST-1", "eu-west", "eu--1", "eu-west-1 ", "x"] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_urls_are_checked_without_quoting_them() {
        for ok in [
            "https://kms.eu-west-1.amazonaws.com",
            "http://127.0.0.1:4566",
            "https://kms.example:8443/x",
            "http://[::1]:80",
        ] {
            assert!(EndpointUrl::parse(ok).is_ok(), "{ok}");
        }
        let err = |s: &str| EndpointUrl::parse(s).unwrap_err();
        assert_eq!(err("ftp://kms.example"), "must start with http:// or https://");
        assert_eq!(err("kms.example"), "must start with http:// or https://");
        assert!(err("https://user:hunter2@kms.example").starts_with("must not contain user info"));
        for bad in [
            "ftp://user:hunter2@evilhost",
            "https://user:hunter2@evilhost:8443",
            "evilhost.local",
            "https://",
            "http:///x",
            "http://evilhost:port",
            "http://evilhost:0",
            "http://evil host",
            "http://[evilhost]",
        ] {
            let e = err(bad);
            assert!(!e.contains("hunter2") && !e.contains("evilhost"), "{bad}: {e}");
        }
    }

    #[test]
    fn public_endpoints() {
        let r = |s: &str| Region::parse(s).unwrap().public_kms_endpoint();
        assert_eq!(r("us-east-1"), "https://kms.us-east-1.amazonaws.com");
        assert_eq!(r("cn-north-1"), "https://kms.cn-north-1.amazonaws.com.cn");
    }

    #[test]
    fn aliases() {
        assert!(Alias::parse("alias/app/prod_key-1").is_ok());
        let max = format!("alias/{}", "a".repeat(250));
        assert!(Alias::parse(&max).is_ok());
        assert!(Alias::parse(&format!("{max}a")).is_err());
        for bad in ["app", "alias/", "alias/aws/x", "alias/a b", "alias/ü", "alias/a:b", "Alias/x"] {
            assert!(Alias::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags() {
        let t = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(Tags::parse(t(&"k".repeat(128), &"v".repeat(256)), "tags").is_ok());
        assert!(Tags::parse(t(&"k".repeat(129), ""), "tags").is_err());
        assert!(Tags::parse(t("k", &"v".repeat(257)), "tags").is_err());
        assert!(Tags::parse(t("", "v"), "tags").is_err());
        assert!(Tags::parse(t("AWS:x", "v"), "tags").is_err());
        let fifty: BTreeMap<_, _> = (0..50).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(Tags::parse(fifty.clone(), "tags").is_ok());
        let mut fiftyone = fifty;
        fiftyone.insert("k50".into(), String::new());
        let err = Tags::parse(fiftyone, "tags").unwrap_err();
        assert_eq!(err[0].field, "tags");
    }
}
