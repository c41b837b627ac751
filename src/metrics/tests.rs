//! Unit tests of the metric families and their pre-resolved handles.

use super::*;
use crate::outcome::{AttemptResult, DeadLetterReason, Outcome, Reason, RedeliveryResult};

#[test]
fn route_handles_count_into_the_right_series() {
    let m = Metrics::new();
    let r = m.route("notify");
    r.record(Outcome::Rejected, Some(Reason::Schema), 0.001);
    r.record(Outcome::NoBinding, None, 0.002);
    let text = String::from_utf8(m.render()).unwrap();
    assert!(
        text.contains(r#"notify_proxy_requests_total{outcome="rejected",route="notify"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"notify_proxy_requests_total{outcome="no_binding",route="notify"} 1"#));
    assert!(text.contains(r#"notify_proxy_rejections_total{reason="schema",route="notify"} 1"#));
    assert!(text.contains(r#"notify_proxy_rejections_total{reason="method",route="notify"} 0"#));
    assert!(text.contains(r#"notify_proxy_build_info{version="#));
}

#[test]
fn enum_discriminants_index_the_handle_vectors() {
    for (i, o) in Outcome::ALL.iter().enumerate() {
        assert_eq!(*o as usize, i);
    }
    for (i, r) in Reason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
    for (i, r) in AttemptResult::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
    for (i, r) in RedeliveryResult::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
    for (i, r) in DeadLetterReason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
}
