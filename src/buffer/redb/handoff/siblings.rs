//! The hand-off files beside the main redb file: naming them, finding them, and adopting their
//! messages into the main file (then deleting them) once no process holds them.

use super::*;

/// A new, unique sibling path of `main`: `<main>.handoff-<pid>-<nanos>.redb`.
pub fn handoff_path(main: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut name = main.as_os_str().to_owned();
    name.push(format!("{MARKER}{}-{nanos}.redb", std::process::id()));
    PathBuf::from(name)
}

/// The sibling files of `main` in its directory, by name order. An unreadable directory is
/// logged and yields none (nothing is adopted, nothing is deleted).
pub fn handoff_files(main: &Path) -> Vec<PathBuf> {
    let Some(main_name) = main.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = match main.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let prefix = format!("{main_name}{MARKER}");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "buffer: cannot list the store's directory for hand-off files; check its permissions");
            return Vec::new();
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".redb"))
        })
        .collect();
    found.sort();
    found
}

pub(super) fn name_of(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Adopts `sibling` into `main`, then deletes the sibling file. Consumes the sibling's handle:
/// it must be the last one, so the file is closed (and unlocked) before it is deleted.
pub(super) fn adopt_and_delete(
    main: &RedbStore,
    sibling: RedbStore,
) -> Result<Adopted, StoreError> {
    let path = sibling.path().to_path_buf();
    let name = name_of(&path);
    let adopted = main.blocking_adopt(&sibling, &name)?;
    drop(sibling);
    match std::fs::remove_file(&path) {
        // Gone: the adoption marker is no longer needed to recognise it.
        Ok(()) => {
            if let Err(e) = main.blocking_forget_adopted(&name) {
                tracing::warn!(error = %e, "buffer: could not drop the adoption marker (harmless)");
            }
        }
        Err(e) => tracing::error!(
            file = %path.display(),
            error = %e,
            "buffer: adopted this hand-off file but cannot delete it; it is recognised as adopted \
             and will not be adopted twice, delete it by hand"
        ),
    }
    Ok(adopted)
}

/// What adopting the leftovers found.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Adopted files and how many messages each held.
    pub adopted: Vec<(PathBuf, usize)>,
    /// Files held by a running process (a proxy in its own hand-off): left alone.
    pub in_use: Vec<PathBuf>,
    /// Files that could not be adopted, with why; kept on disk.
    pub failed: Vec<(PathBuf, StoreError)>,
}

/// Adopts every sibling of `main` that no process holds (blocking). Never deletes a file whose
/// messages are not committed in `main`.
pub fn adopt_leftovers(main: &RedbStore, max_messages: u64) -> Leftovers {
    let mut report = Leftovers::default();
    for path in handoff_files(main.path()) {
        let opened = RedbStore::open_existing(&path, max_messages);
        let result = opened.and_then(|sibling| adopt_and_delete(main, sibling));
        match result {
            Ok(adopted) => {
                tracing::info!(
                    file = %path.display(),
                    messages = adopted.moved.len(),
                    already_adopted = adopted.already,
                    "buffer: adopted a hand-off file left by an earlier process"
                );
                report.adopted.push((path, adopted.moved.len()));
            }
            Err(StoreError::Locked { .. }) => report.in_use.push(path),
            Err(e) => {
                tracing::error!(
                    file = %path.display(),
                    error = %e,
                    "buffer: cannot adopt this hand-off file; it is kept. Inspect it with a copy \
                     of the config whose buffer.path names it, or remove it if it is not a store"
                );
                report.failed.push((path, e));
            }
        }
    }
    report
}
