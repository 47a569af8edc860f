//! Connection settings: a profile of the TOML config file, overridden by environment variables,
//! overridden by flags. The API token is held as a secret and never printed.
//!
//! ```toml
//! default_profile = "demo"
//!
//! [profiles.demo]
//! addr = "http://127.0.0.1:50051"
//! token_file = "/path/to/keyward/data/demo/admin.token"
//!
//! [profiles.prod]
//! addr = "https://keyward.internal.example:50051"
//! ca_file = "ca.pem"                 # relative paths: to the config file's folder
//! cert_file = "client.pem"           # mutual TLS (with key_file)
//! key_file = "client.key"
//! server_name = "keyward.internal.example"
//! token_file = "~/.config/keyward/prod.token"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::Failure;
use crate::args::{DEFAULT_ADDR, Global};

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileFile>,
}

/// One profile as written in the file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    addr: Option<String>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
    token_file: Option<PathBuf>,
}

/// TLS towards the server.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// PEM CA bundle; `None`: the public web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
    pub server_name: Option<String>,
}

/// Everything needed to call the server.
#[derive(Debug)]
pub struct Settings {
    /// With its scheme: `http://…` (plaintext) or `https://…` (TLS).
    pub addr: String,
    /// Set for `https://` addresses.
    pub tls: Option<Tls>,
    /// `SecretString`: its Debug shows no secret.
    pub token: Option<SecretString>,
    /// Where the token came from, for messages (`--token-file FILE`, `KEYWARD_TOKEN`, …).
    pub token_source: Option<String>,
    /// How long a call waits for the server's answer.
    pub timeout: std::time::Duration,
}

/// The settings of the command line `global`, the environment `env` (only `KEYWARD_TOKEN`,
/// `HOME` and `XDG_CONFIG_HOME` are read here: clap reads the other variables) and the config file.
pub fn resolve(global: &Global, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Failure> {
    let profile = selected_profile(global, env)?;
    let (file_dir, p) = match &profile {
        Some((dir, p)) => (dir.clone(), p.clone()),
        None => (PathBuf::new(), ProfileFile::default()),
    };
    let from_file = |path: &Option<PathBuf>| path.as_ref().map(|p| in_dir(&file_dir, p, env));

    let mut addr = global.addr.clone().or(p.addr.clone()).unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let ca_file = global.ca_file.clone().or_else(|| from_file(&p.ca_file));
    let cert_file = global.cert_file.clone().or_else(|| from_file(&p.cert_file));
    let key_file = global.key_file.clone().or_else(|| from_file(&p.key_file));
    let server_name = global.server_name.clone().or(p.server_name.clone());
    let tls_asked = ca_file.is_some() || cert_file.is_some() || key_file.is_some() || server_name.is_some();
    if !addr.contains("://") {
        addr = format!("{}://{addr}", if tls_asked { "https" } else { "http" });
    }
    let tls = if addr.starts_with("https://") {
        let identity = match (cert_file, key_file) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(Failure::new("a client certificate (cert_file) needs its key (key_file)")),
            (None, Some(_)) => return Err(Failure::new("a client key (key_file) needs its certificate (cert_file)")),
        };
        Some(Tls { ca_file, identity, server_name })
    } else if addr.starts_with("http://") {
        if tls_asked {
            return Err(Failure::new(format!(
                "TLS settings (ca_file, cert_file, key_file, server_name) are given but the address {addr} \
                 is plaintext: use https://"
            )));
        }
        None
    } else {
        return Err(Failure::new(format!("the server address {addr:?} is neither http://… nor https://…")));
    };

    let (token, token_source) = if let Some(f) = &global.token_file {
        (Some(read_token(f)?), Some(format!("--token-file {}", f.display())))
    } else if let Some(t) = env("KEYWARD_TOKEN").filter(|t| !t.trim().is_empty()) {
        (Some(SecretString::from(t.trim().to_owned())), Some("KEYWARD_TOKEN".to_owned()))
    } else if let Some(f) = from_file(&p.token_file) {
        (Some(read_token(&f)?), Some(format!("the profile's token_file {}", f.display())))
    } else {
        (None, None)
    };
    Ok(Settings { addr, tls, token, token_source, timeout: std::time::Duration::from_secs(global.timeout.max(1)) })
}

/// The default config file: `$XDG_CONFIG_HOME/keyward/config.toml`, else
/// `~/.config/keyward/config.toml`.
fn default_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("keyward").join("config.toml"))
}

/// The profile to use, with the folder of its file. `None`: no file, or no profile asked for
/// and no `default` one.
fn selected_profile(
    global: &Global,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(PathBuf, ProfileFile)>, Failure> {
    let (path, named) = match &global.config {
        Some(p) => (Some(p.clone()), true),
        None => (default_config_path(env), false),
    };
    let file = match &path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => Some(toml::from_str::<ConfigFile>(&text).map_err(|e| {
                // The message and the line, never the line's text: it may hold a token.
                let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                let at = line.map(|n| format!("line {n}: ")).unwrap_or_default();
                Failure::new(format!("config file {}: {at}{}", p.display(), one_line(e.message())))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => None,
            Err(e) => return Err(Failure::new(format!("cannot read the config file {}: {e}", p.display()))),
        },
        None => None,
    };
    let dir = path.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let asked = global.profile.clone();
    let Some(file) = file else {
        return match asked {
            Some(name) => Err(Failure::new(format!(
                "profile {name:?} asked for, but there is no config file ({}; set KEYWARD_CLI_CONFIG or --config)",
                path.map(|p| p.display().to_string()).unwrap_or_else(|| "no HOME".into())
            ))),
            None => Ok(None),
        };
    };
    let explicit = asked.is_some() || file.default_profile.is_some();
    let name = asked.or(file.default_profile.clone()).unwrap_or_else(|| "default".to_owned());
    match file.profiles.get(&name) {
        Some(p) => Ok(Some((dir, p.clone()))),
        None if !explicit => Ok(None),
        None => {
            let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
            let path = path.map(|p| p.display().to_string()).unwrap_or_default();
            Err(Failure::new(format!(
                "no profile {name:?} in {path} (profiles: {})",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )))
        }
    }
}

/// A path of the config file: `~/` is the home folder, a relative path is relative to the file.
fn in_dir(dir: &Path, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = env("HOME")
    {
        return Path::new(&home).join(rest);
    }
    if path.is_absolute() { path.to_path_buf() } else { dir.join(path) }
}

/// The token in `file`, whitespace trimmed.
fn read_token(file: &Path) -> Result<SecretString, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::new(format!("cannot read the API token file {}: {e}", file.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::new(format!("the API token file {} is empty", file.display())));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// `text` on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use secrecy::ExposeSecret;

    fn global(args: &[&str]) -> Global {
        let mut all = vec!["keyward"];
        all.extend_from_slice(args);
        all.push("whoami");
        crate::args::Cli::try_parse_from(all).unwrap().global
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn profiles_flags_and_env() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "demo.token", "kw_demo\n");
        let cfg = write(
            dir.path(),
            "config.toml",
            "default_profile = \"demo\"\n[profiles.demo]\naddr = \"127.0.0.1:6000\"\ntoken_file = \"demo.token\"\n\
             [profiles.tls]\naddr = \"keyward.example:443\"\nca_file = \"/etc/ca.pem\"\n",
        );
        let cfg = cfg.display().to_string();
        let no_env = |_: &str| None;
        let s = resolve(&global(&["--config", &cfg]), &no_env).unwrap();
        assert_eq!(s.addr, "http://127.0.0.1:6000");
        assert_eq!(s.token.unwrap().expose_secret(), "kw_demo");
        assert!(s.tls.is_none());
        let s = resolve(&global(&["--config", &cfg, "--profile", "tls"]), &no_env).unwrap();
        assert_eq!(s.addr, "https://keyward.example:443", "TLS settings make a bare address https");
        assert_eq!(s.tls.unwrap().ca_file.unwrap(), PathBuf::from("/etc/ca.pem"));
        // Flags and KEYWARD_TOKEN win over the profile.
        let env = |k: &str| (k == "KEYWARD_TOKEN").then(|| "kw_env".to_owned());
        let s = resolve(&global(&["--config", &cfg, "--addr", "http://h:1"]), &env).unwrap();
        assert_eq!((s.addr.as_str(), s.token.unwrap().expose_secret()), ("http://h:1", "kw_env"));
        assert!(!format!("{:?}", resolve(&global(&["--config", &cfg]), &env).unwrap()).contains("kw_env"));
        let e = resolve(&global(&["--config", &cfg, "--profile", "nope"]), &no_env).unwrap_err();
        assert!(e.to_string().contains("profiles: demo, tls"), "{e}");
        let bad = write(dir.path(), "bad.toml", "[profiles.x]\nadress = \"h\"\n");
        let e = resolve(&global(&["--config", &bad.display().to_string()]), &no_env).unwrap_err();
        assert!(e.to_string().contains("adress"), "{e}");
    }

    #[test]
    fn without_a_file_the_default_address() {
        let s = resolve(&global(&[]), &|_| None).unwrap();
        assert_eq!(s.addr, DEFAULT_ADDR);
        assert!(s.token.is_none());
        let e = resolve(&global(&["--addr", "http://h:1", "--ca-file", "ca.pem"]), &|_| None).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
    }
}
