//! Live event sources: the kernel-facing producers of [`dsl::Event`]s.

#[cfg(target_os = "linux")]
pub mod linux;

pub mod feeds;

pub mod es_mapping;
pub mod eslogger;
#[cfg(target_os = "macos")]
pub mod macos;
