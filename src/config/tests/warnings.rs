//! What `check` warns about without refusing: both sides of each documented warning.

use super::*;

/// The warnings a config loads with.
fn warnings(route_extra: &str, admin: &str) -> Vec<String> {
    let text = yaml(route_extra, "", TOKEN_VAR).replace("127.0.0.1:9090", admin);
    load(&text).expect("config loads").warnings
}

#[test]
fn a_deadline_above_10s_warns_naming_the_key_and_10s_does_not() {
    assert!(
        warnings("    retry: { deadline: 10s }", "127.0.0.1:9090").is_empty(),
        "10 s is the documented comfortable maximum"
    );
    let above = warnings("    retry: { deadline: 10001ms }", "127.0.0.1:9090");
    assert_eq!(above.len(), 1, "{above:?}");
    assert!(
        above[0].starts_with("routes[0].retry.deadline:"),
        "{above:?}"
    );
}

#[test]
fn a_non_loopback_admin_address_warns_naming_the_key() {
    assert!(warnings("", "127.0.0.1:9090").is_empty());
    assert!(warnings("", "\"[::1]:9090\"").is_empty());
    let open = warnings("", "0.0.0.0:9090");
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].starts_with("admin.address:"), "{open:?}");
}
