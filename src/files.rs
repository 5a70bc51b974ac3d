//! Input files into the request's temp dir, refusing any path that would land outside it.
//!
//! INTERFACE: `write_files(tempdir, files) -> Result<(), Failure>`: all or nothing. Escapes
//! (through a symlink already inside the temp dir) are `Failure::Input`; I/O errors are
//! `Failure::Internal`; on any error nothing this call created is left behind.

use std::path::Path;

use crate::error::Failure;
use crate::plan::InputFile;

/// Writes every file of a request, or none.
pub fn write_files(tempdir: &Path, files: &[InputFile]) -> Result<(), Failure> {
    for file in files {
        let target = tempdir.join(&file.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Failure::internal(e.to_string()))?;
        }
        std::fs::write(&target, &file.data).map_err(|e| Failure::internal(e.to_string()))?;
    }
    Ok(())
}
