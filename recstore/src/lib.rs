//! Where finished session recordings are kept: the bastion's local recordings directory (the
//! default), or an S3 bucket (`[recordings] store = "s3://bucket/prefix"`).
//!
//! With a bucket, the local recordings directory becomes a *spool*: a session records there
//! exactly as without one (the writer, the chain, the seal, the crash guarantees are
//! `jitssh-recording`'s, unchanged), and the [`Uploader`] task copies each finished recording
//! to the bucket, checks that every object is there with the size of its file, and only then
//! removes the local copy. Recordings found in the spool when the bastion starts (a crash, or
//! uploads that had not happened yet) are uploaded as they are: one left by a crash has no
//! seal, and `verify` reports it unsealed exactly as it does for a local one.
//!
//! Objects mirror the directory layout: `<prefix>/YYYY/MM/DD/<id>/<file>`, so a bucket can be
//! copied to a disk and checked with the same tools, and a session's objects are found from
//! its id alone.
//!
//! The auditor reads a recording from the bucket through [`RemoteRecordings`]: the session's
//! objects are downloaded (streamed, never held whole in memory) into a private cache
//! directory, and the one reader and verifier of `jitssh-recording` run on that, so every
//! auditor command gives the same output for a recording in the bucket as for one on disk.
//!
//! The crate is `object_store` (its `aws` feature) on the TLS stack the workspace already has
//! (reqwest 0.13, rustls on aws-lc-rs): no second TLS implementation, and the same crate
//! would give Azure and GCS later.

mod bucket;
mod error;
mod remote;
mod settings;
mod uploader;

pub use bucket::{Bucket, StoredSession};
pub use error::StoreError;
pub use remote::RemoteRecordings;
pub use settings::{ObjectStoreSettings, SettingsError};
pub use uploader::{Uploader, Uploads};
