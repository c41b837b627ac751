//! The redb buffer across `run --upgrade`: the store the running proxy uses ([`RedbBuffer`]),
//! which can start on a hand-off file and switch to the main file without a restart.
//!
//! Why: redb locks its file, and during a graceful upgrade the old process keeps the lock while
//! it drains. So a new process that finds the main file locked (and was started with
//! `--upgrade`) buffers into a sibling file, `<path>.handoff-<pid>-<nanos>.redb`, and its
//! redelivery worker drains that file. A background task ([`HandoffService`]) keeps trying the
//! main file; once the old process has exited, it adopts the sibling's pending and dead-letter
//! messages into the main file in one transaction (new ids; bytes, metadata and TTL kept),
//! switches every caller to the main file, and deletes the sibling. Whoever holds the main file
//! also adopts any sibling nobody holds (a process that died during its hand-off): at start, in
//! the `buffer` commands, and every few seconds while running.
//!
//! Ids: while on a sibling, the ids handed out are the sibling's plus [`HANDOFF_ID_BASE`], so
//! they can never be taken for a main-file id. After adoption those ids are translated to the
//! new ones, so a redelivery that was in flight across the switch removes or reschedules the
//! right message. Owns the sibling files and the switch; the record layout and the adoption
//! transaction belong to [`super::store`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::RwLock;

mod siblings;

use super::{Adopted, RedbStore};
use crate::buffer::{
    BufferedMessage, DeadLettered, NewMessage, NotificationStore, StoreError, StoreStats, Table,
};
use siblings::name_of;
pub use siblings::{adopt_leftovers, handoff_files, handoff_path, Leftovers};

/// Added to the ids of messages buffered into a hand-off file. Below 2^53, so the ids stay
/// exact in JSON readers that use doubles; a main file would need 4.5e15 messages to reach it.
pub const HANDOFF_ID_BASE: u64 = 1 << 52;

/// How often a process on a hand-off file tries the main file again.
const RETRY_MAIN: Duration = Duration::from_millis(200);
/// How often the holder of the main file looks for siblings left by dead processes.
const SCAN_LEFTOVERS: Duration = Duration::from_secs(2);

/// The marker in a sibling's file name, after the main file's name.
const MARKER: &str = ".handoff-";

enum State {
    Main(RedbStore),
    Handoff(RedbStore),
}

/// The redb buffer of a running proxy: the main file, or a hand-off file until the main file
/// is free. Implements [`NotificationStore`], so the live path, the worker and the admin
/// listener never know which file they use.
pub struct RedbBuffer {
    main_path: PathBuf,
    max_messages: u64,
    state: RwLock<State>,
    /// Hand-off ids (with [`HANDOFF_ID_BASE`]) handed out before adoption -> their main ids.
    adopted_ids: Mutex<HashMap<u64, u64>>,
    /// `buffer.max_dead_letters`, applied to whichever file is in use (u64::MAX: no cap).
    max_dead_letters: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RedbBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBuffer")
            .field("main_path", &self.main_path)
            .field("handoff", &self.is_handoff())
            .finish_non_exhaustive()
    }
}

impl RedbBuffer {
    /// Opens the buffer for `run` (blocking). The main file, with unheld leftovers adopted; if
    /// it is locked and `upgrade` is set, a new hand-off file. Without `upgrade` a locked main
    /// file is an error ([`StoreError::Locked`]): another proxy is using it.
    pub fn open(main_path: &Path, max_messages: u64, upgrade: bool) -> Result<Self, StoreError> {
        let state = match RedbStore::open(main_path, max_messages) {
            Ok(main) => {
                adopt_leftovers(&main, max_messages);
                State::Main(main)
            }
            Err(StoreError::Locked { .. }) if upgrade => {
                let sibling = RedbStore::create_new(&handoff_path(main_path), max_messages)?;
                tracing::warn!(
                    main = %main_path.display(),
                    handoff = %sibling.path().display(),
                    "buffer: the main file is held by the previous process (upgrade); buffering \
                     into a hand-off file until it exits, then adopting it"
                );
                State::Handoff(sibling)
            }
            Err(e) => return Err(e),
        };
        Ok(RedbBuffer {
            main_path: main_path.to_path_buf(),
            max_messages,
            state: RwLock::new(state),
            adopted_ids: Mutex::new(HashMap::new()),
            max_dead_letters: std::sync::atomic::AtomicU64::new(u64::MAX),
        })
    }

    /// Caps the dead letter table of the file in use now and of the main file once adopted.
    pub fn with_max_dead_letters(self, max: u64) -> Self {
        self.max_dead_letters
            .store(max, std::sync::atomic::Ordering::Relaxed);
        if let Ok(state) = self.state.try_read() {
            match &*state {
                State::Main(store) | State::Handoff(store) => store.set_max_dead_letters(max),
            }
        }
        self
    }

    /// Whether the buffer is still on a hand-off file.
    pub fn is_handoff(&self) -> bool {
        self.state
            .try_read()
            .is_ok_and(|s| matches!(*s, State::Handoff(_)))
    }

    /// One step of the background task: on a hand-off file, try to take the main file and adopt;
    /// on the main file, adopt unheld leftovers. Returns how long to wait before the next step.
    pub async fn step(&self) -> Duration {
        let current = match &*self.state.read().await {
            State::Main(main) => Ok(main.clone()),
            State::Handoff(_) => Err(()),
        };
        match current {
            Ok(main) => {
                let max = self.max_messages;
                let _ = tokio::task::spawn_blocking(move || adopt_leftovers(&main, max)).await;
                SCAN_LEFTOVERS
            }
            Err(()) => {
                self.try_switch().await;
                if self.is_handoff() {
                    RETRY_MAIN
                } else {
                    SCAN_LEFTOVERS
                }
            }
        }
    }

    /// Takes the main file if it is free, adopts the hand-off file into it and switches.
    async fn try_switch(&self) {
        let (path, max) = (self.main_path.clone(), self.max_messages);
        let main = match tokio::task::spawn_blocking(move || RedbStore::open(&path, max)).await {
            Ok(Ok(main)) => main,
            Ok(Err(StoreError::Locked { .. })) => return,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "buffer: cannot open the main file to adopt the hand-off file; retrying");
                return;
            }
            Err(_) => return,
        };
        // No store call runs while the files change hands: every call holds the read lock.
        let mut state = self.state.write().await;
        let State::Handoff(sibling) = &*state else {
            return;
        };
        let (sibling_path, sibling_copy) = (sibling.path().to_path_buf(), sibling.clone());
        let target = main.clone();
        let adopted = tokio::task::spawn_blocking(move || {
            let adopted = target.blocking_adopt(&sibling_copy, &name_of(sibling_copy.path()));
            drop(sibling_copy);
            adopted
        })
        .await;
        let adopted = match adopted {
            Ok(Ok(adopted)) => adopted,
            Ok(Err(e)) => {
                tracing::error!(error = %e, handoff = %sibling_path.display(), "buffer: adopting the hand-off file failed; still buffering into it, retrying");
                return;
            }
            Err(_) => return,
        };
        {
            let mut ids = self.adopted_ids.lock().unwrap_or_else(|e| e.into_inner());
            for (_, from, to) in &adopted.moved {
                ids.insert(from.saturating_add(HANDOFF_ID_BASE), *to);
            }
        }
        main.set_max_dead_letters(
            self.max_dead_letters
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        // Replacing the state drops the last handle of the hand-off file: closed and unlocked.
        *state = State::Main(main.clone());
        drop(state);
        tracing::info!(
            main = %self.main_path.display(),
            handoff = %sibling_path.display(),
            messages = adopted.moved.len(),
            "buffer: the previous process released the main file; hand-off file adopted, buffering into the main file"
        );
        let name = name_of(&sibling_path);
        let _ = tokio::task::spawn_blocking(move || match std::fs::remove_file(&sibling_path) {
            Ok(()) => {
                let _ = main.blocking_forget_adopted(&name);
            }
            Err(e) => tracing::error!(file = %sibling_path.display(), error = %e, "buffer: adopted but cannot delete the hand-off file; it will not be adopted twice, delete it by hand"),
        })
        .await;
    }

    /// The file and id behind an id this buffer handed out; `None` if that message cannot be
    /// in the current file. The caller holds `state` (read) for the whole call.
    fn target(&self, state: &State, id: u64) -> Option<(RedbStore, u64)> {
        match (state, id >= HANDOFF_ID_BASE) {
            (State::Main(main), false) => Some((main.clone(), id)),
            (State::Main(main), true) => self
                .adopted_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .map(|&to| (main.clone(), to)),
            (State::Handoff(sibling), true) => Some((sibling.clone(), id - HANDOFF_ID_BASE)),
            // Only hand-off ids were handed out while on the hand-off file.
            (State::Handoff(_), false) => None,
        }
    }
}

#[async_trait]
impl NotificationStore for RedbBuffer {
    fn location(&self) -> String {
        match self.state.try_read().as_deref() {
            Ok(State::Handoff(sibling)) => format!(
                "{} (hand-off: {} is held by the previous process)",
                sibling.path().display(),
                self.main_path.display()
            ),
            _ => self.main_path.display().to_string(),
        }
    }

    async fn insert(&self, msg: NewMessage, request: Vec<u8>) -> Result<u64, StoreError> {
        let state = self.state.read().await;
        match &*state {
            State::Main(main) => main.insert(msg, request).await,
            State::Handoff(sibling) => sibling
                .insert(msg, request)
                .await
                .map(|id| id.saturating_add(HANDOFF_ID_BASE)),
        }
    }

    async fn due(
        &self,
        now_ms: u64,
        horizon_ms: u64,
        limit: usize,
        held: &[String],
    ) -> Result<Vec<BufferedMessage>, StoreError> {
        let state = self.state.read().await;
        match &*state {
            State::Main(main) => main.due(now_ms, horizon_ms, limit, held).await,
            State::Handoff(sibling) => {
                let mut due = sibling.due(now_ms, horizon_ms, limit, held).await?;
                for message in &mut due {
                    message.meta.id = message.meta.id.saturating_add(HANDOFF_ID_BASE);
                }
                Ok(due)
            }
        }
    }

    async fn reschedule(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at_ms: u64,
        last_error: String,
    ) -> Result<bool, StoreError> {
        let state = self.state.read().await;
        match self.target(&state, id) {
            Some((store, id)) => {
                store
                    .reschedule(id, attempts, next_attempt_at_ms, last_error)
                    .await
            }
            None => Ok(false),
        }
    }

    async fn move_to_dead_letter(
        &self,
        id: u64,
        reason: String,
    ) -> Result<Option<DeadLettered>, StoreError> {
        let state = self.state.read().await;
        match self.target(&state, id) {
            Some((store, id)) => store.move_to_dead_letter(id, reason).await,
            None => Ok(None),
        }
    }

    async fn remove(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        let state = self.state.read().await;
        let removed = match self.target(&state, id) {
            Some((store, target)) => store.remove(table, target).await?,
            None => false,
        };
        if removed && matches!(*state, State::Main(_)) && id >= HANDOFF_ID_BASE {
            // Its last use: the worker removes a message once, after its final answer.
            self.adopted_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
        Ok(removed)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let state = self.state.read().await;
        match &*state {
            State::Main(main) => main.stats().await,
            State::Handoff(sibling) => sibling.stats().await,
        }
    }
}

/// The Pingora background service that drives [`RedbBuffer::step`].
pub struct HandoffService(pub std::sync::Arc<RedbBuffer>);

#[async_trait]
impl BackgroundService for HandoffService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let wait = self.0.step().await;
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if self.0.is_handoff() {
            tracing::warn!(
                location = %self.0.location(),
                "buffer: stopping before the main file was free; the process that holds it (or \
                 the next start) adopts this hand-off file"
            );
        }
    }
}

#[cfg(test)]
mod tests;
