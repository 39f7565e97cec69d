//! API to conductor calls, behind a trait so the conductor can later live in another process.
