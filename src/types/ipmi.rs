//! IPMI names (filled in below).
