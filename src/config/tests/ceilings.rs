//! The ceilings of `docs/config.md`, on both sides: the largest value loads, one more is refused
//! naming the key (and 0, where 0 means nothing).

use super::check_cases;

#[test]
fn each_ceiling_admits_its_value_and_refuses_one_more() {
    check_cases(&[
        // The worst answer time may be exactly 14 s (deadline 9.75 s + claim 0.25 s + two
        // store calls of 2 s), not one millisecond more.
        (
            "    on_exhausted: buffer\n    retry: { deadline: 9750ms }",
            "buffer: { backend: postgres, url: { env: TNP_TEST_DB }, store_timeout: 2s }",
            "",
        ),
        (
            "    on_exhausted: buffer\n    retry: { deadline: 9751ms }",
            "buffer: { backend: postgres, url: { env: TNP_TEST_DB }, store_timeout: 2s }",
            "buffer.store_timeout: route \"/notify\" could answer after 14.001s",
        ),
        // The body limit: 1 MiB exactly is allowed, one byte more and 0 are not.
        ("", "limits: { max_body_bytes: 1048576 }", ""),
        (
            "",
            "limits: { max_body_bytes: 1048577 }",
            "limits.max_body_bytes: 1048577 is above the 1 MiB ceiling",
        ),
        (
            "",
            "limits: { max_body_bytes: 0 }",
            "limits.max_body_bytes: must be greater than 0",
        ),
        // The dedupe map: at most 10,000,000 entries.
        ("", "dedupe: { capacity: 10000000 }", ""),
        (
            "",
            "dedupe: { capacity: 10000001 }",
            "dedupe.capacity: 10000001 is above 10,000,000 entries",
        ),
        (
            "",
            "dedupe: { capacity: 0 }",
            "dedupe.capacity: must be at least 1",
        ),
    ]);
}
