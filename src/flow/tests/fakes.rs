//! Test doubles for the flow: a scripted handler and a store whose inserts the test controls.

use super::*;

/// A handler that answers from a script, optionally holding each delivery until released.
pub(super) struct ScriptedHandler {
    pub(super) script: Mutex<VecDeque<Delivery>>,
    pub(super) calls: AtomicUsize,
    pub(super) gate: Option<Semaphore>,
}

impl ScriptedHandler {
    pub(super) fn new(script: Vec<Delivery>) -> Arc<Self> {
        Arc::new(ScriptedHandler {
            script: Mutex::new(script.into()),
            calls: AtomicUsize::new(0),
            gate: None,
        })
    }

    pub(super) fn gated(script: Vec<Delivery>) -> Arc<Self> {
        Arc::new(ScriptedHandler {
            script: Mutex::new(script.into()),
            calls: AtomicUsize::new(0),
            gate: Some(Semaphore::new(0)),
        })
    }

    pub(super) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Deliver for ScriptedHandler {
    fn name(&self) -> &str {
        "handler"
    }

    async fn deliver(&self, _request: &[u8], _policy: &RetryPolicy, _arrived: Instant) -> Delivery {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .expect("the script covers every delivery")
    }
}

/// How the fake store answers an insert.
#[derive(Debug, Clone, Copy)]
pub(super) enum Inserts {
    Succeed,
    Full,
    Broken,
    /// Succeed, but only once the test adds a permit to the gate.
    Gated,
}

#[derive(Debug)]
pub(super) struct FakeStore {
    pub(super) inserts: Mutex<Vec<NewMessage>>,
    pub(super) gate: Semaphore,
    pub(super) mode: Inserts,
    pub(super) committed: AtomicBool,
}

impl FakeStore {
    pub(super) fn new(mode: Inserts) -> Arc<Scripted<Self>> {
        Arc::new(Scripted(FakeStore {
            inserts: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
            mode,
            committed: AtomicBool::new(false),
        }))
    }
}

#[async_trait]
impl Script for FakeStore {
    async fn insert(&self, msg: NewMessage) -> Result<u64, StoreError> {
        match self.mode {
            Inserts::Full => return Err(StoreError::Full { max_messages: 1 }),
            Inserts::Broken => {
                return Err(StoreError::Aborted {
                    operation: "insert",
                })
            }
            Inserts::Gated => self.gate.acquire().await.expect("gate open").forget(),
            Inserts::Succeed => {}
        }
        let mut inserts = self.inserts.lock().unwrap();
        inserts.push(msg);
        self.committed.store(true, Ordering::SeqCst);
        Ok(inserts.len() as u64)
    }
}
