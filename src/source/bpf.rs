//! BPF filters compiled and run by libpcap.
