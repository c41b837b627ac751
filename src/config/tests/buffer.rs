//! The `buffer:` section's backends: the keys each takes, and the PostgreSQL URL kept secret.

use std::time::Duration;

use super::*;

#[test]
fn a_postgres_buffer_reads_its_url_as_a_secret_and_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("database-url");
    std::fs::write(&url_file, "postgres://proxy:s3cr3t@db:5432/notify\n").unwrap();
    let text = yaml(
        "    on_exhausted: buffer",
        &format!(
            "buffer: {{ backend: postgres, url: {{ file: {} }}, schema: fleet_a, pool_size: 4, \
             lease: 20s, store_timeout: 1s }}",
            url_file.display()
        ),
        TOKEN_VAR,
    );
    let c = load(&text).unwrap();
    let BufferBackend::Postgres(pg) = &c.buffer.as_ref().unwrap().backend else {
        panic!("{:?}", c.buffer)
    };
    assert_eq!(
        pg.url, "postgres://proxy:s3cr3t@db:5432/notify",
        "newline trimmed"
    );
    assert_eq!(pg.schema, "fleet_a");
    assert_eq!(pg.pool_size.get(), 4);
    assert_eq!(pg.lease, Duration::from_secs(20));
    assert_eq!(pg.store_timeout, Duration::from_secs(1));
    let shown = format!("{c:?} {:?}", summary(&c));
    assert!(!shown.contains("s3cr3t"), "{shown}");
    // Defaults.
    let c = load(&yaml(
        "",
        "buffer: { backend: postgres, url: { env: TNP_TEST_DB } }",
        TOKEN_VAR,
    ))
    .unwrap();
    let BufferBackend::Postgres(pg) = &c.buffer.as_ref().unwrap().backend else {
        panic!()
    };
    assert_eq!(
        (
            pg.schema.as_str(),
            pg.pool_size.get(),
            pg.lease,
            pg.store_timeout
        ),
        (
            "notify_proxy",
            8,
            Duration::from_secs(30),
            Duration::from_secs(2)
        )
    );
}
