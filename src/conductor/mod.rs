//! The conductor: state machine table, per-node locks, worker pool, periodic tasks, deploy orchestration.
