//! End-to-end suites: one test binary, so one emulator process serves them all.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod access;
mod asymmetric;
mod audit;
mod aws_errors;
mod byok;
mod connection;
mod crash;
mod crypto;
mod groups;
mod key_specs;
mod keyring;
mod keys;
mod keyward_pairs;
mod lifecycle;
mod metrics;
mod oidc;
mod robustness;
mod rotation;
mod rotation_linked;
mod rotation_source;
mod secrets;
mod smoke;
mod sync;
mod tls;
mod worker;
