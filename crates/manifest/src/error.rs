//! Manifest errors: each names the file, line and column, what was found and
//! what is allowed, and shows the offending line.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// An error in a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: cannot read the manifest: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Located),
}

/// A message with its place in the file.
#[derive(Debug)]
pub struct Located {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The source line and a caret under the span.
    pub snippet: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if !self.snippet.is_empty() {
            write!(f, "\n{}", self.snippet)?;
        }
        Ok(())
    }
}

impl Located {
    /// Locates `span` (byte offsets) in `text`.
    pub fn new(file: &Path, text: &str, span: Option<Range<usize>>, message: String) -> Located {
        let span = span.unwrap_or(0..0);
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let source_line = &text[line_start..line_end];
        let width = text[start..span.end.clamp(start, line_end)]
            .chars()
            .count()
            .max(1);
        let gutter = line.to_string().len();
        let snippet = format!(
            "{:gutter$} |\n{line} | {source_line}\n{:gutter$} | {}{}",
            "",
            "",
            " ".repeat(column - 1),
            "^".repeat(width)
        );
        Located {
            file: file.to_path_buf(),
            line,
            column,
            message,
            snippet,
        }
    }
}
