//! The `--format` choice shared by the commands that print data (`sign`, `buffer list`).
//!
//! Owns only the flag's values; each command decides what its text and JSON look like.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}
