//! How a live reload (SIGHUP) ended: the `result` label of `notify_proxy_config_reloads_total`.

/// The `result` label of `notify_proxy_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new config serves from the next request on.
    Success,
    /// The file does not load or validate (as `check` would say); the old config serves.
    Invalid,
    /// The file changes a key that needs a restart; the old config serves.
    RestartRequired,
}

impl ReloadResult {
    pub const ALL: [ReloadResult; 3] = [
        ReloadResult::Success,
        ReloadResult::Invalid,
        ReloadResult::RestartRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Invalid => "invalid",
            ReloadResult::RestartRequired => "restart_required",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReloadResult;

    /// The README's `result` values of `notify_proxy_config_reloads_total`, written out.
    #[test]
    fn each_result_has_its_documented_label() {
        let labels: Vec<_> = ReloadResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels, ["success", "invalid", "restart_required"]);
    }
}
