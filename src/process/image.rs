//! What a child execs, prepared in full before the clone: the executable's path, argv and the
//! environment as NUL-terminated strings with the pointer arrays `execve` takes, and the working
//! directory as an open folder. The child shares the runner's memory until it execs and may not
//! allocate, so nothing of this is built there; it only reads what is here.

use std::ffi::{c_char, CString, OsStr};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::LazyLock;

/// The runner's own environment as `KEY=value` strings, built once: it never changes while
/// the runner runs, and rebuilding it for every command would be most of a start's allocations.
static BASE_ENV: LazyLock<Vec<(Vec<u8>, CString)>> = LazyLock::new(|| {
    std::env::vars_os()
        .filter_map(|(key, value)| {
            let entry = CString::new([key.as_bytes(), b"=", value.as_bytes()].concat()).ok()?;
            Some((key.into_vec(), entry))
        })
        .collect()
});

/// A child's environment: the runner's own, with the request's variables over it.
pub(crate) struct ChildEnv {
    /// The request's variables, the last of each name only (later wins), as `KEY=value`.
    overrides: Vec<(Vec<u8>, CString)>,
}

impl ChildEnv {
    /// The runner's environment with `variables` over it, later ones winning; refused when a
    /// name or value holds a NUL byte (no C string can carry it).
    pub(crate) fn new(variables: &[(&str, &str)]) -> io::Result<Self> {
        let mut overrides: Vec<(Vec<u8>, CString)> = Vec::with_capacity(variables.len());
        for (key, value) in variables.iter().rev() {
            if overrides.iter().all(|(k, _)| k != key.as_bytes()) {
                let entry = c_string(&[key.as_bytes(), b"=", value.as_bytes()].concat())?;
                overrides.push((key.as_bytes().to_vec(), entry));
            }
        }
        Ok(ChildEnv { overrides })
    }

    fn overridden(&self, key: &[u8]) -> bool {
        self.overrides.iter().any(|(k, _)| k == key)
    }

    /// The PATH the child will see.
    pub(crate) fn path(&self) -> Option<&OsStr> {
        self.overrides
            .iter()
            .chain(BASE_ENV.iter())
            .find(|(k, _)| k == b"PATH")
            .map(|(_, entry)| OsStr::from_bytes(&entry.as_bytes()["PATH=".len()..]))
    }

    /// `envp`: NUL-terminated; the pointers borrow from `self` and BASE_ENV.
    fn pointers(&self) -> Vec<*const c_char> {
        BASE_ENV
            .iter()
            .filter(|(k, _)| !self.overridden(k))
            .chain(self.overrides.iter())
            .map(|(_, entry)| entry.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    }
}

/// What to exec, and where.
pub(crate) struct Image<'a> {
    /// The file to execute, exactly (no PATH search); a relative path is taken from `cwd`.
    path: CString,
    /// argv, argv[0] the program as the user named it.
    argv: Vec<CString>,
    env: ChildEnv,
    /// The working directory, an open folder the child enters by descriptor: no path is
    /// looked up again.
    cwd: BorrowedFd<'a>,
}

impl<'a> Image<'a> {
    /// `path` run as `argv0 args...` with `env` in `cwd`; refused when an argument holds a NUL
    /// byte.
    pub(crate) fn new(
        path: &OsStr,
        argv0: &str,
        args: &[String],
        env: ChildEnv,
        cwd: BorrowedFd<'a>,
    ) -> io::Result<Self> {
        let argv = std::iter::once(argv0.as_bytes())
            .chain(args.iter().map(|a| a.as_bytes()))
            .map(c_string)
            .collect::<io::Result<_>>()?;
        Ok(Image {
            path: c_string(path.as_bytes())?,
            argv,
            env,
            cwd,
        })
    }

    pub(super) fn cwd(&self) -> BorrowedFd<'a> {
        self.cwd
    }

    /// The arguments of `execve`, pointing into this image (and BASE_ENV) for as long as it
    /// is borrowed.
    pub(super) fn exec_args(&self) -> ExecArgs<'_> {
        ExecArgs {
            path: &self.path,
            argv: self
                .argv
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect(),
            envp: self.env.pointers(),
        }
    }
}

/// `execve`'s three arguments, ready before the clone: the path, and NUL-terminated arrays of
/// pointers to NUL-terminated strings that live as long as `'a` (the image, or BASE_ENV, which
/// is never changed or freed).
pub(super) struct ExecArgs<'a> {
    path: &'a CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

impl ExecArgs<'_> {
    pub(super) fn path(&self) -> *const c_char {
        self.path.as_ptr()
    }

    pub(super) fn argv(&self) -> *const *const c_char {
        self.argv.as_ptr()
    }

    pub(super) fn envp(&self) -> *const *const c_char {
        self.envp.as_ptr()
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes.to_vec()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL byte in an argument or variable",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_variables_win_and_path_is_the_childs() {
        let env = ChildEnv::new(&[("PATH", "/a"), ("X", "1"), ("PATH", "/b")]).unwrap();
        assert_eq!(env.path(), Some(OsStr::new("/b")));
        let entries: Vec<&[u8]> = env.overrides.iter().map(|(_, e)| e.as_bytes()).collect();
        assert_eq!(entries, [b"PATH=/b".as_slice(), b"X=1"]);
        let pointers = env.pointers();
        assert_eq!(pointers.last(), Some(&std::ptr::null()));
    }

    #[test]
    fn a_nul_byte_is_refused() {
        assert!(ChildEnv::new(&[("X", "a\0b")]).is_err());
        let dir = std::fs::File::open("/").unwrap();
        let cwd = std::os::fd::AsFd::as_fd(&dir);
        let env = ChildEnv::new(&[]).unwrap();
        let error = Image::new(OsStr::new("/bin/true"), "true", &["a\0".into()], env, cwd).err();
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::InvalidInput));
    }
}
