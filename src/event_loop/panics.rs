//! Catching panics in callbacks without the standard hook's noise.
//!
//! The loop reports a panicking callback through its exception handler (one
//! line on stderr by default), so the standard panic hook's own message would
//! say it twice. A hook installed once per process stays quiet for panics
//! raised while a loop runs a callback on this thread, notes where they
//! happened, and hands every other panic to the hook that was there before.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// How many loop callbacks are running on this thread (nested loops count).
    static CATCHING: Cell<usize> = const { Cell::new(0) };
    /// The last panic raised while a loop callback ran on this thread: its
    /// message and where it happened (`file:line:column`), until `catch`
    /// takes it.
    static LAST_PANIC: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

fn install_quiet_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) > 0 {
                let location = info.location().map(ToString::to_string);
                let text = message(info.payload());
                LAST_PANIC.with(|last| *last.borrow_mut() = Some((text, location)));
            } else {
                previous(info);
            }
        }));
    });
}

/// A caught panic: its message, and where it happened (`file:line:column`) if known.
pub(crate) type Panic = (String, Option<String>);

/// While alive, panics on this thread are loop callbacks' panics: the
/// hook stays quiet about them and notes where they happened, for
/// [`catch_quietly`] to report.
pub(crate) struct Quiet(());

impl Quiet {
    pub(crate) fn new() -> Quiet {
        install_quiet_hook();
        CATCHING.with(|c| c.set(c.get() + 1));
        Quiet(())
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        CATCHING.with(|c| c.set(c.get() - 1));
    }
}

/// Runs `f`, catching a panic as `Err((message, location))`.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    let _quiet = Quiet::new();
    catch_quietly(f)
}

/// [`catch`] for a caller that holds a [`Quiet`] already (the run phase:
/// one for the batch, a cheap `catch_unwind` per callback).
#[inline]
pub(crate) fn catch_quietly<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let location = LAST_PANIC.with(|last| last.borrow_mut().take()).and_then(|(_, location)| location);
        (message(payload.as_ref()), location)
    })
}

/// The message and location of the panic unwinding through a loop callback
/// on this thread now, for a drop guard that must describe it; `None` if
/// no loop callback is running here.
pub(crate) fn unwinding_panic() -> Option<Panic> {
    if CATCHING.with(Cell::get) == 0 {
        return None;
    }
    LAST_PANIC.with(|last| last.borrow().clone())
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_panics_carry_message_and_location() {
        let (message, location) = catch(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(message, "boom 7");
        assert!(location.expect("the hook saw the panic").contains("panics.rs"));
        assert_eq!(catch(|| 5).unwrap(), 5);
        assert_eq!(CATCHING.with(Cell::get), 0);
    }
}
