//! The TLS front: rustls over mio, doing nginx's job in the reference deployment.
//!
//! IMPLEMENTATION IN PROGRESS (front helper): the types below are the agreed interface.

/// The `[front]` table of the config file, validated.
#[derive(Debug, Clone, Default)]
pub struct FrontSettings {}

impl FrontSettings {
    /// Validate the `[front]` table. The error is one line naming the setting
    /// (`front.certfile`), the value and what is allowed.
    pub fn from_table(_table: &toml::Table) -> Result<FrontSettings, String> {
        Ok(FrontSettings {})
    }
}
