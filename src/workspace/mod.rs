//! The request's temp dir, where its files go and its commands run: made (or taken from
//! `Direktiv-TempDir`), filled with the input files and the `out/` folders, asked for each
//! command's working directory and `output` file, and removed when private.
//!
//! Every piece of file-system work here runs on tokio's blocking pool, never on an async
//! worker thread: a slow disk or a big input file must not stall other requests' output pumps.
//! Every error is mapped to a `cmd.*` failure in one place, `Problem::failure`.

mod files;

use std::io;
use std::path::{Path, PathBuf};

pub use files::write_files;

use crate::direktiv::OUT_DIRS;
use crate::error::Failure;
use crate::plan::InputFile;

/// Where a request's files go and its commands run.
pub(crate) enum TempDirChoice {
    /// `Direktiv-TempDir`: the sidecar owns it (and removes it); we only use it.
    Given(PathBuf),
    /// No header: a private directory made for this request and removed afterwards.
    Private,
}

/// A request's prepared temp dir: input files written, `out/` folders in place.
pub(crate) struct Workspace {
    root: PathBuf,
    /// The private directory, removed by `close`; `None` for a given one.
    private: Option<tempfile::TempDir>,
}

impl Workspace {
    /// Makes (or checks) the temp dir, writes the input files (all or none) and the `out/`
    /// folders.
    pub(crate) async fn prepare(
        choice: TempDirChoice,
        files: Vec<InputFile>,
    ) -> Result<Workspace, Failure> {
        if let TempDirChoice::Given(path) = &choice {
            if !path.is_absolute() {
                return Err(Problem::TempDirNotAbsolute(path.clone()).failure());
            }
        }
        blocking(move || {
            let workspace = match choice {
                TempDirChoice::Given(path) => {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| Problem::TempDirCreate(path.clone(), e).failure())?;
                    Workspace {
                        root: path,
                        private: None,
                    }
                }
                TempDirChoice::Private => {
                    let dir = tempfile::Builder::new()
                        .prefix("direktiv-cmd-")
                        .tempdir()
                        .map_err(|e| Problem::PrivateCreate(e).failure())?;
                    Workspace {
                        root: dir.path().to_path_buf(),
                        private: Some(dir),
                    }
                }
            };
            write_files(&workspace.root, &files)?;
            workspace
                .make_out_dirs()
                .map_err(|e| Problem::OutDirs(e).failure())?;
            Ok(workspace)
        })
        .await
    }

    /// The temp dir.
    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    /// A command's working directory: the temp dir, or `workdir` inside it (created when
    /// missing). A workdir that resolves outside the temp dir — through a symlink a previous
    /// command made — is refused.
    pub(crate) async fn workdir(&self, workdir: Option<&Path>) -> Result<PathBuf, Failure> {
        let Some(workdir) = workdir else {
            return Ok(self.root.clone());
        };
        let (root, workdir) = (self.root.clone(), workdir.to_path_buf());
        blocking(move || {
            std::fs::create_dir_all(root.join(&workdir))
                .map_err(|e| Problem::WorkdirCreate(workdir.clone(), e).failure())?;
            match resolve_inside(&root, &workdir) {
                Ok(Some(resolved)) => Ok(resolved),
                Ok(None) => Err(Problem::WorkdirOutside(workdir).failure()),
                Err(e) => Err(Problem::WorkdirResolve(workdir, e).failure()),
            }
        })
        .await
    }

    /// Reads at most `max` bytes of a command's `output` file, refusing one that resolves
    /// outside the temp dir.
    pub(crate) async fn read_output(&self, output: &Path, max: usize) -> Result<Vec<u8>, Failure> {
        let (root, output) = (self.root.clone(), output.to_path_buf());
        blocking(move || {
            use std::io::Read;
            let unreadable = |e| Problem::OutputRead(output.clone(), e).failure();
            let Some(path) = resolve_inside(&root, &output).map_err(unreadable)? else {
                return Err(Problem::OutputOutside(output).failure());
            };
            let file = std::fs::File::open(&path).map_err(unreadable)?;
            let mut bytes = Vec::new();
            file.take(max as u64)
                .read_to_end(&mut bytes)
                .map_err(unreadable)?;
            Ok(bytes)
        })
        .await
    }

    /// Removes a private directory (a given one belongs to the sidecar).
    ///
    /// Most commands leave nothing behind, so the skeleton this runner made is removed with
    /// five `rmdir`s; only when one fails (something was left) is the tree walked.
    pub(crate) async fn close(self) {
        let Some(dir) = self.private else {
            return;
        };
        let span = tracing::Span::current();
        let removed =
            tokio::task::spawn_blocking(move || span.in_scope(|| remove_private(dir))).await;
        if let Err(error) = removed {
            tracing::warn!(%error, "could not remove the request's private temp dir");
        }
    }

    /// `out/instance`, `out/workflow`, `out/namespace`, where missing. A private dir is fresh,
    /// so plain mkdirs do (input files may already have made some: that is fine); a given dir
    /// usually has them from the sidecar.
    fn make_out_dirs(&self) -> io::Result<()> {
        let root = &self.root;
        match self.private {
            Some(_) => std::iter::once("out")
                .chain(OUT_DIRS)
                .try_for_each(|d| create_dir_if_missing(&root.join(d))),
            None => OUT_DIRS
                .iter()
                .try_for_each(|d| std::fs::create_dir_all(root.join(d))),
        }
    }
}

/// What went wrong with the temp dir (input files map their own errors, in `files`).
enum Problem {
    TempDirNotAbsolute(PathBuf),
    TempDirCreate(PathBuf, io::Error),
    PrivateCreate(io::Error),
    OutDirs(io::Error),
    WorkdirCreate(PathBuf, io::Error),
    WorkdirResolve(PathBuf, io::Error),
    WorkdirOutside(PathBuf),
    OutputRead(PathBuf, io::Error),
    OutputOutside(PathBuf),
}

impl Problem {
    /// The one mapping to `cmd.*`: the request's own paths are `cmd.input`, the runner's I/O
    /// is `cmd.internal`.
    fn failure(self) -> Failure {
        match self {
            Problem::TempDirNotAbsolute(path) => Failure::input(format!(
                "Direktiv-TempDir must be an absolute path, got '{}'",
                path.display()
            )),
            Problem::TempDirCreate(path, e) => Failure::io(
                format!("temp dir '{}' cannot be created", path.display()),
                e,
            ),
            Problem::PrivateCreate(e) => Failure::io("cannot create a temp dir", e),
            Problem::OutDirs(e) => Failure::io("cannot create the out/ folders in the temp dir", e),
            Problem::WorkdirCreate(workdir, e) => Failure::input(format!(
                "workdir '{}' cannot be created: {e}",
                workdir.display()
            )),
            Problem::WorkdirResolve(workdir, e) => {
                Failure::input(format!("workdir '{}': {e}", workdir.display()))
            }
            Problem::WorkdirOutside(workdir) => Failure::input(format!(
                "workdir '{}' leads outside the request's temp dir",
                workdir.display()
            )),
            Problem::OutputRead(output, e) => Failure::io(
                format!("failed: output file '{}' cannot be read", output.display()),
                e,
            ),
            Problem::OutputOutside(output) => Failure::input(format!(
                "output file '{}' leads outside the request's temp dir",
                output.display()
            )),
        }
    }
}

/// Runs file-system work on the blocking pool.
async fn blocking<T, F>(work: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    // The blocking pool does not carry the request's span; its warnings should.
    let span = tracing::Span::current();
    let work = move || span.in_scope(work);
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| {
            Err(Failure::internal(format!(
                "the temp dir could not be prepared: {error}"
            )))
        })
}

/// Where `relative` really leads once symlinks are resolved, when that is inside `tempdir`;
/// `Ok(None)` when it leads outside. For paths that commands may have changed since the
/// request was checked (a `workdir`, an `output` file).
fn resolve_inside(tempdir: &Path, relative: &Path) -> io::Result<Option<PathBuf>> {
    let root = std::fs::canonicalize(tempdir)?;
    let resolved = std::fs::canonicalize(tempdir.join(relative))?;
    Ok(resolved.starts_with(&root).then_some(resolved))
}

/// Removes a private temp dir: the empty skeleton with `rmdir`s, else the whole tree.
fn remove_private(dir: tempfile::TempDir) {
    let root = dir.keep();
    let skeleton = OUT_DIRS
        .iter()
        .map(|out| root.join(out))
        .chain([root.join("out"), root.clone()]);
    let mut emptied = true;
    for path in skeleton {
        if std::fs::remove_dir(&path).is_err() {
            emptied = false;
            break;
        }
    }
    if !emptied {
        if let Err(error) = std::fs::remove_dir_all(&root) {
            tracing::warn!(%error, dir = %root.display(), "could not remove the request's private temp dir");
        }
    }
}

fn create_dir_if_missing(path: &Path) -> io::Result<()> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}
