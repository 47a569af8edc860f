//! keyward-shared: the domain crate the server, the worker and the CLI use.
//!
//! `domain` holds pure types and rules, `kms` the AWS KMS port and adapter, `store` the
//! database, `crypto` sealing at rest, `app` the use cases (methods of [`Keyward`]) and the
//! worker's jobs, `startup` what every binary does first. The binaries call use cases only.

pub mod app;
pub mod config;
pub mod crypto;
pub mod domain;
mod error;
pub mod kms;
pub mod metrics;
pub mod oidc;
pub mod startup;
#[cfg(feature = "test-util")]
pub mod store;
#[cfg(not(feature = "test-util"))]
mod store;

pub use app::jobs;
pub use app::{
    AuditQuery, Binding, BrokenLink, Clock, CopyRequest, Credentials, Ctx, CurrentPrincipal, DataKeyRequest, Estate,
    GroupPatch, ImportRequest, KeyCursor, KeyFilter, KeyOrder, KeyPatch, Keyward, LinkedCopies, NewGroup, NewKey,
    NewPrincipal, PrincipalPatch, PublicKey, RotateRequest, RotationOutcome, RotationSchedule, Settings, Signing,
    SystemClock, ToSource,
};
pub use error::{Error, Precondition, Result};
