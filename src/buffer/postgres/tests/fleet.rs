//! The store as a fleet uses it: instances at once, leases, migrations, an unreachable or hung
//! database, the dead-letter cap.

use super::*;

#[tokio::test]
async fn the_bound_holds_across_instances_inserting_at_once() {
    let schema = schema_or_skip!("full_fleet");
    let a = instance(&schema, "a", 50, LEASE);
    let b = instance(&schema, "b", 50, LEASE);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..120u64 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { store.insert(message(i, 1), request(i)).await });
    }
    let (mut stored, mut full) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(_) => stored += 1,
            Err(StoreError::Full { .. }) => full += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((stored, full), (50, 70));
    assert_eq!(a.stats().await.unwrap().pending, 50);
}

#[tokio::test]
async fn concurrent_inserts_each_get_their_own_committed_row() {
    let schema = schema_or_skip!("batch");
    let store = instance(&schema, "a", 10_000, LEASE);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300u64 {
        let store = store.clone();
        tasks.spawn(async move { (i, store.insert(message(i, i), request(i)).await.unwrap()) });
    }
    let mut seen = std::collections::HashSet::new();
    // Read back through another pool: committed, and each id holds its own caller's message.
    let reader = instance(&schema, "reader", 10_000, LEASE);
    while let Some(done) = tasks.join_next().await {
        let (i, id) = done.unwrap();
        assert!(seen.insert(id), "id {id} handed out twice");
        let (_, got) = reader.get(id).await.unwrap().unwrap();
        assert_eq!(got.request, request(i));
        assert_eq!(got.meta.message.received_at_ms, i);
    }
    assert_eq!(reader.stats().await.unwrap().pending, 300);
}

#[tokio::test]
async fn binary_requests_and_nul_characters_round_trip() {
    let schema = schema_or_skip!("binary");
    let store = instance(&schema, "a", 10, LEASE);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mut msg = message(1, 1);
    // PostgreSQL text refuses NUL; a notification's fields can carry one.
    msg.message_id = Some("RU\0evil".into());
    msg.last_error = "bad\0error".into();
    let id = store.insert(msg, bytes.clone()).await.unwrap();
    let (_, got) = store.get(id).await.unwrap().unwrap();
    assert_eq!(got.request, bytes, "request bytes are exact");
    assert_eq!(
        got.meta.message.message_id.as_deref(),
        Some("RU\u{FFFD}evil")
    );
    assert!(store
        .move_to_dead_letter(id, "why\0".into())
        .await
        .unwrap()
        .is_some());
    assert!(store.reschedule(id, 1, 1, "x\0".into()).await.is_ok());
}

#[tokio::test]
async fn a_lease_keeps_other_instances_off_until_it_runs_out() {
    let schema = schema_or_skip!("lease");
    let a = instance(&schema, "a", 100, Duration::from_millis(800));
    let b = instance(&schema, "b", 100, Duration::from_secs(30));
    let mut inserted = Vec::new();
    for i in 0..10 {
        inserted.push(a.insert(message(i, 1), request(i)).await.unwrap());
    }
    // Both instances ask at once: every message goes to exactly one of them.
    let (from_a, from_b) = tokio::join!(
        a.due(u64::MAX, u64::MAX, 6, &[]),
        b.due(u64::MAX, u64::MAX, 6, &[])
    );
    let (from_a, from_b) = (ids(&from_a.unwrap()), ids(&from_b.unwrap()));
    let mut all: Vec<u64> = from_a.iter().chain(&from_b).copied().collect();
    all.sort_unstable();
    assert_eq!(all, inserted, "a: {from_a:?} b: {from_b:?}");
    assert!(a.due(u64::MAX, u64::MAX, 10, &[]).await.unwrap().is_empty());
    assert!(b.due(u64::MAX, u64::MAX, 10, &[]).await.unwrap().is_empty());

    // A "dies" holding its claims: B takes them once A's lease has run out, not before.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let taken = ids(&b.due(u64::MAX, u64::MAX, 10, &[]).await.unwrap());
    assert_eq!(taken, from_a);
    assert_eq!(b.lease_takeovers(), from_a.len() as u64);
    assert!(
        a.due(u64::MAX, u64::MAX, 10, &[]).await.unwrap().is_empty(),
        "B's lease holds"
    );

    // At shutdown an instance gives its leases back at once.
    assert_eq!(b.release_claims().await.unwrap(), 10);
    assert_eq!(
        ids(&a.due(u64::MAX, u64::MAX, 10, &[]).await.unwrap()),
        inserted
    );
}

#[tokio::test]
async fn instances_migrating_at_once_apply_each_migration_once() {
    let schema = schema_or_skip!("migrate");
    let pools: Vec<PgPool> = (0..6).map(|_| schema.pool()).collect();
    let handles: Vec<_> = pools
        .iter()
        .map(|pool| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.migrate().await })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    let (client, connection) = tokio_postgres::connect(&testing::url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            &format!(
                "SELECT version FROM {}.schema_migrations ORDER BY version",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=schema::LATEST).collect::<Vec<_>>());
    // And the store works on it.
    let store = PostgresStore::new(pools[3].clone(), 10, LEASE, "a");
    store.insert(message(1, 1), request(1)).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_database_fails_promptly_and_never_shows_the_password() {
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PgOptions {
        url: format!("postgres://proxy:s3cr3t-pw@127.0.0.1:{port}/test"),
        schema: "nowhere".into(),
        pool_size: 2,
        call_timeout: Duration::from_secs(2),
    };
    let pool = PgPool::new(&options).unwrap();
    let store = PostgresStore::new(pool, 10, LEASE, "a");
    let started = Instant::now();
    let err = store.insert(message(1, 1), request(1)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let shown = format!("{err} {err:?} {store:?} {options:?} {}", store.location());
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    let err = store.due(1, u64::MAX, 10, &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");

    // A URL that does not parse is reported without its text.
    let bad = PgOptions {
        url: "postgres://proxy:s3cr3t-pw@127.0.0.1:notaport/test".into(),
        ..options.clone()
    };
    let err = PgPool::new(&bad).unwrap_err().to_string();
    assert!(
        !err.contains("s3cr3t") && err.contains("does not parse"),
        "{err}"
    );
    // A schema name is spliced into SQL: only plain identifiers pass.
    let injected = PgOptions {
        schema: "x; DROP TABLE y".into(),
        ..options
    };
    assert!(matches!(
        PgPool::new(&injected),
        Err(StoreError::Config { .. })
    ));
}

#[tokio::test]
async fn a_hung_database_is_cut_off_by_the_call_timeout() {
    // Accepts connections and never answers: what a frozen server or a black-holed route
    // looks like from here.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let pool = PgPool::new(&PgOptions {
        url: format!("postgres://postgres@127.0.0.1:{port}/test"),
        schema: "hung".into(),
        pool_size: 2,
        call_timeout: Duration::from_millis(700),
    })
    .unwrap();
    let store = PostgresStore::new(pool, 10, LEASE, "a");
    let started = Instant::now();
    let err = store.stats().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let started = Instant::now();
    assert!(store.insert(message(1, 1), request(1)).await.is_err());
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    hold.abort();
}

#[tokio::test]
async fn the_dead_letter_cap_evicts_the_oldest_and_a_far_schedule_is_due() {
    let schema = schema_or_skip!("dead_cap");
    let store = instance(&schema, "a", 10, LEASE).with_max_dead_letters(2);
    let mut ids_in = Vec::new();
    for i in 0..3 {
        ids_in.push(store.insert(message(i, 1), request(i)).await.unwrap());
    }
    let mut evicted = 0;
    for id in &ids_in {
        let moved = store
            .move_to_dead_letter(*id, "expired".into())
            .await
            .unwrap();
        evicted += moved.expect("was pending").evicted;
    }
    assert_eq!(evicted, 1, "one beyond the cap of 2");
    let dead: Vec<u64> = store
        .list(Table::DeadLetter)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(dead, ids_in[1..].to_vec(), "the oldest went first");

    // A schedule far beyond now + horizon (a clock step back) is due anyway.
    let far = store
        .insert(message(9, 1_000_000), request(9))
        .await
        .unwrap();
    assert_eq!(
        ids(&store.due(10, 1_000, 10, &[]).await.unwrap()),
        vec![far]
    );
}
