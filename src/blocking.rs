//! Blocking work (file system calls) from async handlers.
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

/// Runs `f` off the async runtime, or in place inside [`inline_within`]. `None` when the pool's
/// task failed (it panicked, or the runtime is shutting down); in place, a panic reaches the
/// caller, as any other panic of its thread does.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    if INLINE.with(Cell::get) {
        return Some(f());
    }
    tokio::task::spawn_blocking(f).await.ok()
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
        assert_ne!(run(move || std::thread::current().id()).await, Some(here));
        let inline = inline_within(|| futures::executor::block_on(run(move || std::thread::current().id())));
        assert_eq!(inline, Some(here));
        // The flag does not outlive the call.
        assert_ne!(run(move || std::thread::current().id()).await, Some(here));
    }
}
