//! BPF filters compiled and run by libpcap.

/// placeholder
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct BpfError;
