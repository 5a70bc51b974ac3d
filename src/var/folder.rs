//! Development mode's variables: one file per variable, `<folder>/<scope>/<name>`, so a script
//! that uses `direktiv-cmd var` can be tried with `direktiv-cmd run` and no sidecar. The name
//! rule (checked before) keeps every name a plain file name inside the folder.

use std::io::{self, Read};
use std::path::Path;

use super::{Failed, Scope, Source};

pub(super) fn get(folder: &Path, name: &str, scope: Scope) -> Result<Box<dyn Read>, Failed> {
    let path = folder.join(scope.as_str()).join(name);
    match std::fs::File::open(&path) {
        Ok(file) => Ok(Box::new(file)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(Failed::Missing(format!(
            "variable {name:?} does not exist in scope {} (development mode: {})",
            scope.as_str(),
            folder.display()
        ))),
        Err(error) => Err(Failed::other(format!(
            "cannot read '{}': {error}",
            path.display()
        ))),
    }
}

/// Writes the value next to its place, then renames it there: a reader never sees half.
pub(super) fn set(
    folder: &Path,
    name: &str,
    scope: Scope,
    mut value: Source,
) -> Result<(), Failed> {
    let dir = folder.join(scope.as_str());
    let failed = |error: io::Error| {
        Failed::other(format!(
            "cannot write variable {name:?} in '{}': {error}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let mut staged = tempfile::NamedTempFile::new_in(&dir).map_err(failed)?;
    io::copy(&mut value.reader, &mut staged)
        .map_err(|error| Failed::other(format!("cannot read {}: {error}", value.what)))?;
    staged
        .persist(dir.join(name))
        .map_err(|error| failed(error.error))?;
    Ok(())
}
