//! Capture files (pcap, pcapng).
