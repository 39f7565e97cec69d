//! Short blocking work (file system calls, disk I/O) from async code. Not for work that waits on
//! other tasks (a channel's `blocking_recv`): in place, that would wait on its own thread.
//!
//! Normally such work goes to tokio's blocking pool. A simulation calls the routers that do it
//! synchronously, through its bridge (`lab::bridge`), with its own thread blocked until the
//! answer is there: handing the work to the pool then only adds two thread wake-ups, which cost
//! more than the work (a path lookup and a small read). Inside [`inline_within`] it runs on the
//! calling thread instead.

use std::cell::Cell;

thread_local! {
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` off the async runtime (as `spawn_blocking`, whose answer it gives), or in place
/// inside [`inline_within`], where it cannot fail: a panic there reaches the caller, as any other
/// panic of its thread does.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, tokio::task::JoinError> {
    if INLINE.with(Cell::get) {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f).await
}

/// [`run`] for file and device I/O: a failed task is an I/O error too.
pub async fn io<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    run(f).await.map_err(|e| std::io::Error::other(format!("I/O task failed: {e}")))?
}

/// Calls `f` with [`run`] working in place on this thread: for a caller that blocks this thread
/// until `f` is done anyway.
pub fn inline_within<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            INLINE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(INLINE.with(|c| c.replace(true)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_moves_to_the_pool_except_inside_inline_within() {
        let here = std::thread::current().id();
        assert_ne!(run(move || std::thread::current().id()).await.ok(), Some(here));
        let inline = inline_within(|| futures::executor::block_on(run(move || std::thread::current().id())));
        assert_eq!(inline.ok(), Some(here));
        // The flag does not outlive the call.
        assert_ne!(run(move || std::thread::current().id()).await.ok(), Some(here));
    }
}
