//! `[push]`: XEP-0357 push notifications: whether users may register app servers, what a
//! notification tells the app server, and the limits and retries of sending them. See
//! `actors/push.rs` for what they drive and `src/services/push.rs` for the protocol.

use std::time::Duration;

use serde::Deserialize;

use super::{at_least_one, ConfigError};

/// XEP-0357 push notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Whether users may enable push notifications (and the account advertises the feature).
    pub enabled: bool,
    /// Put the sender's bare JID in the notification (`last-message-sender`): the app
    /// server (and the push services of Apple or Google behind it) then learn who wrote.
    pub include_sender: bool,
    /// Put the message body in the notification (`last-message-body`): the app server then
    /// reads what was written (never the body of an encrypted message, which it cannot see).
    pub include_body: bool,
    /// Registrations one account may hold; an extra `enable` replaces the oldest.
    pub max_per_account: usize,
    /// Notifications sent for one account per minute at most (retries included); more are
    /// dropped.
    pub max_per_minute: u32,
    /// Seconds the app server has to answer a notification before it is sent again.
    pub timeout_secs: u64,
    /// Seconds a client with push enabled has to acknowledge (XEP-0198) a message before it
    /// is taken to be asleep with its connection open and notified (0: only once the
    /// connection is found gone).
    pub ack_delay_secs: u64,
    /// How often a notification is sent again when the app server does not answer or
    /// answers an error of type `wait` (0: never).
    pub retries: u32,
    /// Seconds before the first retry; each further retry waits twice as long.
    pub retry_backoff_secs: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            enabled: true,
            include_sender: false,
            include_body: false,
            max_per_account: 5,
            max_per_minute: 10,
            timeout_secs: 30,
            ack_delay_secs: 30,
            retries: 3,
            retry_backoff_secs: 10,
        }
    }
}

impl PushConfig {
    /// How long the app server has to answer.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// How long to wait before retry number `attempt` (1 for the first): the backoff doubled
    /// for each earlier retry.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(16);
        Duration::from_secs(self.retry_backoff_secs.saturating_mul(factor))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        at_least_one(&[
            ("push.max_per_account", self.max_per_account as u64),
            ("push.max_per_minute", self.max_per_minute as u64),
            ("push.timeout_secs", self.timeout_secs),
            ("push.retry_backoff_secs", self.retry_backoff_secs),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn defaults_and_errors_name_the_key() {
        let c = Config::parse("").unwrap();
        assert!(c.push.enabled);
        assert!(!c.push.include_sender && !c.push.include_body);
        assert_eq!(c.push.max_per_account, 5);
        let e = Config::parse("[push]\nmax_per_account = 0\n").unwrap_err();
        assert_eq!(e.key, "push.max_per_account");
        let e = Config::parse("[push]\nmax_per_minute = 0\n").unwrap_err();
        assert_eq!(e.key, "push.max_per_minute");
        let e = Config::parse("[push]\ninclude_body = \"yes\"\n").unwrap_err();
        assert!(e.key.starts_with("push.include_body"), "{e}");
        let e = Config::parse("[push]\nsecret = 1\n").unwrap_err();
        assert!(e.to_string().contains("push"), "{e}");
    }

    #[test]
    fn backoff_doubles() {
        let c = Config::parse("[push]\nretry_backoff_secs = 2\n").unwrap();
        let secs: Vec<u64> = (1..=4).map(|a| c.push.backoff(a).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16]);
    }
}
