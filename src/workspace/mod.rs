//! The request's temp dir, where its files go and its commands run: made (or taken from
//! `Direktiv-TempDir`), filled with the input files and the `out/` folders, asked for each
//! command's working directory and `output` file, and removed when private.
//!
//! Every piece of file-system work here runs off the async worker threads: preparing the temp
//! dir and opening a working directory in the trip that starts a command (`exec`), reading an
//! `output` file through `blocking::run`, removals on tokio's blocking pool. A slow disk, a
//! FIFO or a huge tree must not stall the server. The temp dir is held open as a descriptor
//! and every path inside it is looked up relative to that descriptor (`beneath`), so nothing is
//! created, opened or entered outside it, whatever symlinks commands leave. Names the file
//! system refuses are `cmd.input` naming the field; the runner's own I/O trouble is
//! `cmd.internal`.

mod beneath;
mod files;
mod removal;
mod result_file;

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

pub use files::write_files;
pub(crate) use result_file::{Home as ResultHome, Left, Place as ResultsDir, ResultFile};

use crate::direktiv::OUT_DIRS;
use crate::error::Failure;
use crate::plan::{FieldPath, InputFile};
use beneath::{quoted, PathError};

/// The header that names a given temp dir, for messages.
const TEMP_DIR_HEADER: &str = "Direktiv-TempDir";

/// Where a request's files go and its commands run.
pub(crate) enum TempDirChoice {
    /// `Direktiv-TempDir`: the sidecar owns it (and removes it); we only use it.
    Given(PathBuf),
    /// No header: a private directory made for this request and removed afterwards.
    Private,
}

/// A request's temp dir, open: every lookup starts here. Cheap to clone (the descriptor is
/// shared), so each command's start takes it along off the async workers.
#[derive(Clone)]
pub(crate) struct TempDir {
    root: PathBuf,
    dir: Arc<OwnedFd>,
}

/// A request's prepared temp dir: input files written, `out/` folders in place.
pub(crate) struct Workspace {
    temp_dir: TempDir,
    /// A temp dir the runner made, until it is removed (`close`, or dropping the workspace).
    private: Option<PathBuf>,
}

impl Workspace {
    /// Refuses, before anything is made, a given temp dir that is not an absolute path.
    pub(crate) fn check(choice: &TempDirChoice) -> Result<(), Failure> {
        match choice {
            TempDirChoice::Given(path) if !path.is_absolute() => Err(Failure::input(format!(
                "{TEMP_DIR_HEADER} must be an absolute path, got '{}'",
                path.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Makes (or opens) the temp dir, writes the input files (all or none) and the `out/`
    /// folders. A private temp dir is made in `private_in`, else in the system temp dir.
    /// Blocking file-system work: called off the async workers, in the trip that also starts
    /// the request's first command.
    pub(crate) fn prepare(
        choice: TempDirChoice,
        files: &[InputFile],
        private_in: Option<&Path>,
    ) -> Result<Workspace, Failure> {
        Workspace::check(&choice)?;
        let workspace = match choice {
            TempDirChoice::Given(path) => Workspace {
                temp_dir: TempDir {
                    dir: Arc::new(open_given(&path)?),
                    root: path,
                },
                private: None,
            },
            TempDirChoice::Private => {
                let mut builder = tempfile::Builder::new();
                builder.prefix("direktiv-cmd-");
                let made = match private_in {
                    Some(root) => builder.tempdir_in(root),
                    None => builder.tempdir(),
                };
                let made = made.map_err(|e| Failure::io("cannot create a temp dir", e))?;
                let root = made.keep();
                match open_dir(&root) {
                    Ok(dir) => Workspace {
                        private: Some(root.clone()),
                        temp_dir: TempDir {
                            root,
                            dir: Arc::new(dir),
                        },
                    },
                    Err(e) => {
                        let _ = std::fs::remove_dir(&root);
                        return Err(Failure::io("cannot open the new temp dir", e));
                    }
                }
            }
        };
        // From here on a failure must not leave a private dir behind.
        let filled = files::write_files_at(workspace.temp_dir.dir(), files)
            .and_then(|()| workspace.make_out_dirs());
        match filled {
            Ok(()) => Ok(workspace),
            Err(failure) => {
                workspace.close_now();
                Err(failure)
            }
        }
    }

    /// The temp dir.
    pub(crate) fn temp_dir(&self) -> &TempDir {
        &self.temp_dir
    }

    /// Removes a private temp dir on the calling thread, which must be off the async workers
    /// (a command may have left a huge tree).
    pub(crate) fn close_now(self) {
        if let Some(root) = self.into_private() {
            removal::remove_private(&root);
        }
    }

    /// Removes a private temp dir (a given one belongs to the sidecar), off the async worker
    /// threads: a command may have left a huge tree.
    pub(crate) async fn close(self) {
        let Some(root) = self.into_private() else {
            return;
        };
        let span = tracing::Span::current();
        let removed =
            tokio::task::spawn_blocking(move || span.in_scope(|| removal::remove_private(&root)))
                .await;
        if let Err(error) = removed {
            tracing::warn!(%error, "could not remove the request's private temp dir");
        }
    }

    /// The private temp dir, now the caller's to remove.
    fn into_private(mut self) -> Option<PathBuf> {
        self.private.take()
    }

    /// `out/instance`, `out/workflow`, `out/namespace`, where missing (a given temp dir usually
    /// has them from the sidecar). Never made through a symlink leading out: a reused temp dir
    /// may hold one.
    fn make_out_dirs(&self) -> Result<(), Failure> {
        for out in OUT_DIRS {
            let path = Path::new(out);
            // A given temp dir usually has them already (the sidecar makes them): one lookup
            // beneath the temp dir finds a folder there, and only what is missing is made (a
            // make and an open per component, most of them failing with EEXIST).
            let folder = OFlags::PATH | OFlags::DIRECTORY;
            if beneath::open(self.temp_dir.dir(), path, folder).is_ok() {
                continue;
            }
            beneath::make_dirs(self.temp_dir.dir(), path).map_err(|e| match e.refusal() {
                Some(why) => Failure::input(format!(
                    "{TEMP_DIR_HEADER}: {} {why}; the out/ folders are made only inside the \
                     temp dir",
                    quoted(path)
                )),
                None => Failure::io(
                    "cannot create the out/ folders in the temp dir",
                    io::Error::from(e.errno),
                ),
            })?;
        }
        Ok(())
    }
}

impl TempDir {
    /// The temp dir.
    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    /// The temp dir, open.
    pub(crate) fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Where its commands' `DIREKTIV_RESULT` files are made when the runner's folder for them
    /// cannot take them: the temp dir itself.
    pub(crate) fn results_fallback(&self) -> ResultsDir {
        ResultsDir {
            dir: Arc::clone(&self.dir),
            path: self.root.clone(),
            runner_own: false,
        }
    }

    /// A command's working directory, opened: the temp dir, or `workdir` inside it (made when
    /// missing). Blocking: called in the trip that starts the command.
    pub(crate) fn workdir(&self, workdir: Option<&FieldPath>) -> Result<OwnedFd, Failure> {
        let Some(workdir) = workdir else {
            // The temp dir itself: another descriptor of the one held open (a dup).
            return self
                .dir
                .try_clone()
                .map_err(|e| Failure::io("cannot open the temp dir", e));
        };
        beneath::make_dirs(self.dir(), &workdir.path)
            .map_err(|e| refused_path(workdir, "cannot be used as the working directory", e))
    }

    /// Reads at most `max` bytes of a command's `output` file, which must be a regular file
    /// inside the temp dir. It is opened without blocking (`O_NONBLOCK`: a FIFO would wait for
    /// a writer) and checked with `fstat` before anything is read.
    pub(crate) async fn read_output(
        &self,
        output: &FieldPath,
        max: usize,
    ) -> Result<Vec<u8>, Failure> {
        let (dir, output) = (Arc::clone(&self.dir), output.clone());
        blocking(move || {
            // What it is, before it is opened for reading: opening a device can act on it (a
            // tape rewinds, a watchdog starts) or be refused by the container's device rules,
            // and either way the answer is that `output` names no regular file.
            let path_only = beneath::open(dir.as_fd(), &output.path, OFlags::PATH)
                .map_err(|e| refused_path(&output, "cannot be read", e))?;
            regular_output(&output, &path_only)?;
            let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
            let fd = beneath::open(dir.as_fd(), &output.path, flags)
                .map_err(|e| refused_path(&output, "cannot be read", e))?;
            // Again on what was opened: the name may have been replaced in between.
            regular_output(&output, &fd)?;
            let mut bytes = Vec::new();
            std::fs::File::from(fd)
                .take(max as u64)
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::io(format!("{}: cannot be read", output.field), e))?;
            Ok(bytes)
        })
        .await
    }
}

impl Drop for Workspace {
    /// A workspace dropped without `close` (a panic in the pipeline) still removes its private
    /// temp dir, on the blocking pool when there is a runtime.
    fn drop(&mut self) {
        let Some(root) = self.private.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || removal::remove_private(&root))),
            Err(_) => removal::remove_private(&root),
        }
    }
}

/// The `cmd.*` failure for a request path the disk refused: `cmd.input` naming the field
/// when the request is at fault, else `cmd.internal`.
fn refused_path(path: &FieldPath, doing: &str, error: PathError) -> Failure {
    match error.refusal() {
        Some(why) => Failure::input(format!("{}: {} {why}", path.field, quoted(&path.path))),
        None => Failure::io(
            format!("{}: {} {doing}", path.field, quoted(&path.path)),
            io::Error::from(error.errno),
        ),
    }
}

/// Refuses an `output` that is not a regular file (`cmd.input`, saying what it is).
fn regular_output(output: &FieldPath, fd: &OwnedFd) -> Result<(), Failure> {
    let stat = rustix::fs::fstat(fd)
        .map_err(|e| Failure::io(format!("{}: cannot be read", output.field), e.into()))?;
    match not_regular(FileType::from_raw_mode(stat.st_mode)) {
        None => Ok(()),
        Some(kind) => Err(Failure::input(format!(
            "{}: {} is {kind}; output must be a regular file",
            output.field,
            quoted(&output.path)
        ))),
    }
}

/// What a file that is not a regular file is, for messages; `None` for a regular file.
fn not_regular(kind: FileType) -> Option<&'static str> {
    Some(match kind {
        FileType::RegularFile => return None,
        FileType::Directory => "a folder",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Symlink => "a symbolic link",
        FileType::Unknown => "not a regular file",
    })
}

/// Opens a given temp dir, making it when missing. A header naming something that cannot be
/// a folder (a file, a FIFO, a path through a file, a name too long) is the request's fault.
fn open_given(path: &Path) -> Result<OwnedFd, Failure> {
    let opened = match open_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path).and_then(|()| open_dir(path))
        }
        other => other,
    };
    opened.map_err(|e| {
        let errno = e.raw_os_error().map(Errno::from_raw_os_error);
        match errno {
            Some(Errno::NOTDIR | Errno::EXIST) => Failure::input(format!(
                "{TEMP_DIR_HEADER}: {} is not a folder, or goes through something that is not one",
                quoted(path)
            )),
            Some(Errno::LOOP | Errno::NAMETOOLONG) => Failure::input(format!(
                "{TEMP_DIR_HEADER}: {} cannot be used: {e}",
                quoted(path)
            )),
            _ => Failure::io(format!("temp dir '{}' cannot be opened", path.display()), e),
        }
    })
}

/// Opens a folder (symlinks followed: the sidecar or the runner chose this path).
fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

/// Runs file-system work off the async workers (`blocking::run`).
async fn blocking<T, F>(work: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    // The blocking pool does not carry the request's span; its warnings should.
    let span = tracing::Span::current();
    let work = move || span.in_scope(work);
    crate::blocking::run(work).await.unwrap_or_else(|error| {
        Err(Failure::internal(format!(
            "the temp dir could not be read: {error}"
        )))
    })
}
