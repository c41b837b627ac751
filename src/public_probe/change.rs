//! When the public probe writes a log line: once per change of its state (passing, or failing
//! at one step for one cause), never once per run, so a probe failing every 30 s for a day
//! writes one line, not 2,880.
//!
//! Owns that state machine only. Pure: no I/O, no clock.

use crate::probe::Step;

/// What the last run said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// No run yet (since start, or since the probed URL changed).
    #[default]
    Unknown,
    Passing,
    Failing {
        step: Step,
        cause: &'static str,
    },
}

/// A change worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The first run (since start or a new URL) passed.
    Passing,
    /// It failed before and passes now.
    Recovered,
    /// It fails, and did not fail before (first run, or it passed).
    Failing,
    /// It fails at another step or for another cause than before.
    FailingOtherwise {
        was_step: Step,
        was_cause: &'static str,
    },
}

/// The state between runs.
#[derive(Debug, Default)]
pub struct Watch {
    state: State,
}

impl Watch {
    /// The run's result (`None`: passed; else the step and the fixed cause word), and the change
    /// to log, if it is one.
    pub fn observe(&mut self, failure: Option<(Step, &'static str)>) -> Option<Change> {
        let next = match failure {
            None => State::Passing,
            Some((step, cause)) => State::Failing { step, cause },
        };
        let change = match (self.state, next) {
            (a, b) if a == b => None,
            (State::Unknown, State::Passing) => Some(Change::Passing),
            (_, State::Passing) => Some(Change::Recovered),
            (
                State::Failing {
                    step: was_step,
                    cause: was_cause,
                },
                State::Failing { .. },
            ) => Some(Change::FailingOtherwise {
                was_step,
                was_cause,
            }),
            (_, _) => Some(Change::Failing),
        };
        self.state = next;
        change
    }

    /// Forgets the last state: the next run is a first one (the URL changed, or the probe
    /// was switched off).
    pub fn reset(&mut self) {
        self.state = State::Unknown;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_change_none_per_repeat() {
        let mut w = Watch::default();
        let refused = Some((Step::Connect, "refused"));
        let mismatch = Some((Step::Answer, "public_url_mismatch"));
        let token = Some((Step::Answer, "wrong_token"));
        let seen: Vec<_> = [
            refused, refused, refused, mismatch, mismatch, token, None, None, refused,
        ]
        .into_iter()
        .map(|r| w.observe(r))
        .collect();
        assert_eq!(
            seen,
            [
                Some(Change::Failing),
                None,
                None,
                Some(Change::FailingOtherwise {
                    was_step: Step::Connect,
                    was_cause: "refused"
                }),
                None,
                Some(Change::FailingOtherwise {
                    was_step: Step::Answer,
                    was_cause: "public_url_mismatch"
                }),
                Some(Change::Recovered),
                None,
                Some(Change::Failing),
            ]
        );
    }

    #[test]
    fn a_first_pass_is_told_once_and_a_reset_starts_over() {
        let mut w = Watch::default();
        assert_eq!(w.observe(None), Some(Change::Passing));
        assert_eq!(w.observe(None), None);
        w.reset();
        assert_eq!(w.observe(None), Some(Change::Passing));
        w.reset();
        assert_eq!(
            w.observe(Some((Step::Tls, "certificate"))),
            Some(Change::Failing)
        );
    }
}
