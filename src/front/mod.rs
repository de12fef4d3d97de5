//! The TLS front: rustls over mio, doing nginx's job in the reference deployment.
//!
//! IMPLEMENTATION IN PROGRESS (front helper): the types below are the agreed interface.

/// The `[front]` table of the config file, validated.
#[derive(Debug, Clone, Default)]
pub struct FrontSettings {}
