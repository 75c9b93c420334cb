//! Live event sources: the kernel-facing producers of [`dsl::Event`]s.

#[cfg(target_os = "linux")]
pub mod linux;

pub mod feeds;

pub mod es;
pub mod synthetic;
