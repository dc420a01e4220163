//! `[archive]`: the message archive (XEP-0313) the operator may opt into. Off by default: the
//! privacy policy then keeps no conversations beyond offline messages. When on, the retention
//! is required (at most 365 days unless `allow_longer_retention`) and the privacy page says so.

use serde::Deserialize;

use super::{err, ConfigError};
use crate::store::archive::Mode;

/// Most results one page of a query may carry.
pub const MAX_PAGE_SIZE: usize = 1_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Archive users' one-to-one messages.
    pub enabled: bool,
    /// Archived messages are deleted after this many days; required when enabled.
    pub retention_days: Option<u64>,
    /// XEP-0441 default for users who chose nothing: `always`, `roster` or `never`.
    pub default_mode: ModeName,
    /// Results per page when a query asks for more (or for no limit).
    pub max_page_size: usize,
    /// Room owners may turn archiving on for their rooms (`muc#roomconfig_enablearchiving`).
    pub rooms: bool,
}

/// [`Mode`] as the configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    Always,
    Roster,
    Never,
}

impl From<ModeName> for Mode {
    fn from(m: ModeName) -> Mode {
        match m {
            ModeName::Always => Mode::Always,
            ModeName::Roster => Mode::Roster,
            ModeName::Never => Mode::Never,
        }
    }
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: false,
            retention_days: None,
            default_mode: ModeName::Always,
            max_page_size: 100,
            rooms: false,
        }
    }
}

impl ArchiveConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_PAGE_SIZE).contains(&self.max_page_size) {
            return Err(err(
                "archive.max_page_size",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        if self.rooms && !self.enabled {
            return Err(err(
                "archive.rooms",
                "needs archive.enabled = true (and its retention_days)",
            ));
        }
        match self.retention_days {
            None if self.enabled => Err(err(
                "archive.retention_days",
                "required when archive.enabled = true: say how many days messages are kept",
            )),
            Some(0) => Err(err("archive.retention_days", "must be at least 1")),
            _ => Ok(()),
        }
    }

    /// Days archived messages are kept, when archiving is on.
    pub fn retention(&self) -> Option<u64> {
        self.enabled.then_some(self.retention_days).flatten()
    }
}
