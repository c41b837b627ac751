use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Threshold 3, probes from 250 ms doubling to 1 s, a probe lost after 5 s.
fn breaker() -> CircuitBreaker {
    CircuitBreaker::new(
        NonZeroU32::new(3).unwrap(),
        ProbeSchedule::new(ms(1000), ms(5000)),
    )
}

fn open(b: &CircuitBreaker, t: Instant, unreachable: bool) {
    for _ in 0..3 {
        b.on_failure(t, t, unreachable);
    }
    assert_eq!(b.state(t), CircuitState::Open);
}

#[test]
fn opens_after_threshold_consecutive_failures() {
    let b = breaker();
    let t = Instant::now();
    assert_eq!(b.on_failure(t, t, false), Transition::Unchanged);
    b.on_failure(t, t, false);
    assert_eq!(b.state(t), CircuitState::Closed);
    assert_eq!(
        b.on_success(),
        Transition::Unchanged,
        "a success resets the count"
    );
    b.on_failure(t, t, false);
    b.on_failure(t, t, false);
    assert!(b.allow(t));
    assert_eq!(b.on_failure(t, t, false), Transition::Opened);
    assert_eq!(b.state(t), CircuitState::Open);
    assert!(!b.allow(t + ms(249)));
    assert_eq!(b.admission(t + ms(249)), Admission::None);
}

#[test]
fn the_first_probe_is_due_a_quarter_second_after_opening_and_only_one_goes() {
    let b = breaker();
    let t = Instant::now();
    open(&b, t, false);
    let due = t + ms(250);
    assert_eq!(b.state(due), CircuitState::HalfOpen);
    assert_eq!(b.admission(due), Admission::Probe);
    assert!(b.allow(due), "the probe");
    assert!(!b.allow(due), "only one probe at a time");
    assert_eq!(b.admission(due), Admission::None);
    assert_eq!(b.on_success(), Transition::Closed { probe: true });
    assert_eq!(b.state(due), CircuitState::Closed);
    assert_eq!(b.admission(due), Admission::All);
    assert!(b.allow(due));
}

#[test]
fn failed_probes_double_the_wait_up_to_max_wait() {
    let b = breaker();
    let mut t = Instant::now();
    open(&b, t, false);
    // Waits: 250, 500, 1000, then capped at 1000.
    for expected in [250, 500, 1000, 1000, 1000] {
        assert!(!b.allow(t + ms(expected - 1)), "not before {expected} ms");
        t += ms(expected);
        assert!(b.allow(t), "probe after {expected} ms");
        assert_eq!(b.on_failure(t, t, false), Transition::ProbeFailed);
        assert_eq!(b.state(t), CircuitState::Open);
    }
}

#[test]
fn failures_of_attempts_older_than_the_opening_are_ignored() {
    let b = breaker();
    let t = Instant::now();
    let slow_attempt_started = t;
    let opened = t + ms(1000);
    open(&b, opened, false);
    // A slow attempt from before the opening fails late: the probe is not pushed back.
    assert_eq!(
        b.on_failure(slow_attempt_started, opened + ms(200), false),
        Transition::Unchanged
    );
    let probe = opened + ms(250);
    assert!(b.allow(probe), "the probe is due as planned");
    // ...and a late failure of an old attempt does not fail the probe either.
    b.on_failure(slow_attempt_started, probe, false);
    assert_eq!(b.state(probe), CircuitState::HalfOpen);
    b.on_success();
    assert_eq!(b.state(probe), CircuitState::Closed);
}

#[test]
fn a_lost_probe_is_replaced_after_lost_after() {
    let b = breaker();
    let t = Instant::now();
    open(&b, t, false);
    let probe = t + ms(250);
    assert!(b.allow(probe));
    // Its result never comes.
    assert!(!b.allow(probe + ms(4999)));
    assert_eq!(b.admission(probe + ms(5000)), Admission::Probe);
    assert!(b.allow(probe + ms(5000)), "replaced");
    assert!(!b.allow(probe + ms(5000)));
}

#[test]
fn an_accepted_connect_makes_the_probe_due_when_connections_had_failed() {
    let b = breaker();
    let t = Instant::now();
    open(&b, t, true);
    assert!(b.wants_connect_check(t));
    assert!(b.on_connectable(t + ms(10)));
    assert!(
        !b.wants_connect_check(t + ms(10)),
        "the probe is due: nothing to learn"
    );
    assert!(b.allow(t + ms(10)), "the probe goes now, not at 250 ms");
    assert!(!b.on_connectable(t + ms(11)), "a probe is under way");
    // The probe failed with an answer (a 5xx): connects say nothing new any more.
    b.on_failure(t + ms(20), t + ms(30), false);
    assert!(!b.wants_connect_check(t + ms(30)));
    assert!(!b.on_connectable(t + ms(40)));
    assert!(!b.allow(t + ms(40)), "the schedule rules again (500 ms)");
    assert!(b.allow(t + ms(530)));
}

#[test]
fn connects_are_no_news_when_the_handler_answered_badly() {
    let b = breaker();
    let t = Instant::now();
    open(&b, t, false);
    assert!(!b.wants_connect_check(t));
    assert!(!b.on_connectable(t));
    assert!(!b.allow(t + ms(100)));
    let closed = breaker();
    assert!(!closed.wants_connect_check(t));
    assert!(!closed.on_connectable(t));
}

#[test]
fn a_success_while_open_closes_it() {
    let b = breaker();
    let t = Instant::now();
    open(&b, t, true);
    assert_eq!(b.on_success(), Transition::Closed { probe: false });
    assert!(b.allow(t));
}

#[test]
fn max_wait_shorter_than_a_quarter_second_bounds_the_first_probe() {
    let b = CircuitBreaker::new(
        NonZeroU32::new(1).unwrap(),
        ProbeSchedule::new(ms(100), ms(1000)),
    );
    let t = Instant::now();
    b.on_failure(t, t, false);
    assert!(!b.allow(t + ms(99)));
    assert!(b.allow(t + ms(100)));
}

/// The README's values of `notify_proxy_circuit_state`, written out.
#[test]
fn each_state_has_its_documented_gauge_value() {
    let values: Vec<_> = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
    ]
    .map(CircuitState::as_gauge)
    .to_vec();
    assert_eq!(values, [0, 1, 2]);
}

/// A connect accepted once the probe is due (at 250 ms exactly, or later) makes nothing due
/// that was not: it says so, and leaves the probe's time where it was.
#[test]
fn a_connect_when_the_probe_is_already_due_changes_nothing() {
    for at in [ms(250), ms(400)] {
        let b = breaker();
        let t = Instant::now();
        open(&b, t, true);
        assert!(!b.wants_connect_check(t + at), "{at:?}");
        assert!(
            !b.on_connectable(t + at),
            "{at:?}: the probe was already due"
        );
        assert_eq!(b.state(t + ms(250)), CircuitState::HalfOpen, "{at:?}");
    }
}
