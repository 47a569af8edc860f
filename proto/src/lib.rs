//! Keyward's gRPC API, package `keyward.v1`, generated from `proto/keyward/v1/*.proto`.

/// Messages and services of `keyward.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("keyward.v1");
}

/// The encoded `FileDescriptorSet` of every Keyward proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("keyward_descriptor");
