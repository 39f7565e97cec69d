//! Ending child processes from synchronous code (drop guards), without sleeping: a pidfd
//! becomes readable when its process exits, so the wait is a bounded poll(2).

use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions, kill_process, pidfd_open, waitpid};

/// Sends SIGKILL to `pid` and waits up to `timeout` for it to exit; reaps it if it is our child.
/// Returns whether it is gone.
pub(crate) fn kill_and_wait(pid: i32, timeout: Duration) -> bool {
    let Some(p) = Pid::from_raw(pid) else {
        return true;
    };
    let pidfd = match pidfd_open(p, PidfdFlags::empty()) {
        Ok(fd) => fd,
        // No such process: already gone (zombies can still be opened, so reap below anyway).
        Err(_) => {
            reap(p);
            return true;
        }
    };
    let _ = kill_process(p, Signal::KILL);
    let ts = Timespec { tv_sec: timeout.as_secs() as _, tv_nsec: timeout.subsec_nanos() as _ };
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let exited = matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0);
    reap(p);
    exited
}

fn reap(p: Pid) {
    // Only succeeds for our own children; anything else is reaped by its parent.
    let _ = waitpid(Some(p), WaitOptions::NOHANG);
}
