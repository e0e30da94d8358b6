//! The selector contract as a test kit: every rule the crate's own
//! backends pass, for checking a selector of your own.
//!
//! Compiled with the `conformance` feature only (a test-time dependency):
//!
//! ```toml
//! [dev-dependencies]
//! tulip-selectors = { version = "0.1", features = ["conformance"] }
//! ```
//!
//! Check every rule in one line, from a test or a `main`; each rule is
//! printed as it passes, a failing one with its message, and the call
//! panics at the end, naming every rule that failed:
//!
//! ```no_run
//! use tulip_selectors::PollSelector;
//! tulip_selectors::conformance::check_all(|| PollSelector::<String>::new());
//! ```
//!
//! Or make one `#[test]` per rule, so that a failure names its rule
//! (`my_selector::timeout_is_never_early`):
//!
//! ```no_run
//! use tulip_selectors::PollSelector;
//! tulip_selectors::conformance_tests!(my_selector, || PollSelector::<String>::new());
//! # fn main() {}
//! ```
//!
//! The selector holds `String` data (not `Copy`: data really moves in and
//! out). Rules where the contract lets backends differ (a closed fd at
//! `register` or at `select`, an fd above `FD_SETSIZE`, a regular file)
//! follow the [`Capabilities`] the selector declares through
//! `selector.backend().capabilities()`, or those you pass
//! ([`check_all_with`], `conformance_tests!(name, new, capabilities = caps)`).
//!
//! [`differential`] checks selectors against each other and against a model
//! of the contract with seeded random operation sequences; one rule runs a
//! short sequence of it.
//!
//! The rules open sockets, close fds and check that their numbers stay
//! closed, open thousands of fds, and install a `SIGUSR1` handler: they
//! take the locks of [`support`] so that they can run as parallel tests of
//! one binary. Tests of your own in the same binary that open fds should
//! hold [`support::shared`].

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::{Capabilities, Events, Selector};

pub mod differential;
mod readiness;
mod registration;
pub mod support;
mod waiting;

const READ: Events = Events::READ;
const WRITE: Events = Events::WRITE;
const BOTH: Events = Events::READ.union(Events::WRITE);

type Open<'a> = dyn Fn() -> io::Result<Box<dyn Selector<String>>> + 'a;

/// What a rule checks: how to make the selector, and what it declares.
pub(crate) struct Subject<'a> {
    new: &'a Open<'a>,
    pub(crate) capabilities: Capabilities,
}

impl Subject<'_> {
    /// A new selector to check.
    pub(crate) fn open(&self) -> Box<dyn Selector<String>> {
        (self.new)().unwrap_or_else(|err| panic!("cannot make the selector under test: {err}"))
    }
}

/// One rule of the contract.
pub struct Rule {
    name: &'static str,
    check: fn(&Subject<'_>),
}

impl Rule {
    /// Its name, which is also the name of its `#[test]` in [`conformance_tests!`](crate::conformance_tests).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The rules, one list: [`RULES`] and [`conformance_tests!`](crate::conformance_tests) are made from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_rules {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! {
            { $($args)* }
            // register, unregister, modify, the key table
            registration::register_returns_the_key,
            registration::register_rejects_invalid_arguments,
            registration::register_twice_is_already_exists,
            registration::register_above_fd_setsize,
            registration::register_of_a_closed_fd,
            registration::register_of_a_regular_file,
            registration::unregister_returns_the_key_and_forgets_it,
            registration::unregister_after_close,
            registration::unregister_after_close_and_reuse,
            registration::modify_unregistered_is_not_found,
            registration::modify_with_same_events_replaces_data,
            registration::modify_with_same_events_makes_no_syscall,
            registration::modify_with_invalid_events_keeps_the_key,
            registration::modify_changes_the_reported_events,
            registration::modify_refused_by_the_os_removes_the_key,
            registration::keys_len_and_is_empty_track_registrations,
            registration::io_safe_forms_act_as_the_raw_forms,
            registration::non_copy_data_round_trips,
            // timeouts
            waiting::zero_timeout_never_blocks,
            waiting::timeout_is_never_early,
            waiting::nothing_registered_timeout_is_a_plain_sleep,
            waiting::none_blocks_until_another_thread_writes,
            waiting::huge_timeouts_are_clamped,
            waiting::signal_does_not_cut_the_timeout_short,
            // what select reports
            readiness::ready_fd_appears_once_with_merged_events,
            readiness::unregistered_events_are_masked,
            readiness::modify_stops_watching_dropped_events,
            readiness::closed_peer_is_readable,
            readiness::hang_up_is_reported_for_registered_events,
            readiness::fd_closed_while_registered,
            readiness::selected_is_exact_size,
            readiness::select_each_matches_select,
            readiness::each_reader_wakes_for_its_own_writer,
            readiness::thousands_of_fds_in_one_select,
            // everything at once, at random, against the model
            differential::random_sequences_match_the_model,
        }
    };
}

/// The table of rules.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_table {
    ({} $($module:ident :: $rule:ident),* $(,)?) => {
        /// Every rule, in the order [`check_all`] runs them.
        pub static RULES: &[Rule] = &[$(Rule { name: stringify!($rule), check: $module :: $rule }),*];
    };
}

/// One `#[test]` per rule.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    ({ $module:ident, $new:expr, $capabilities:expr, $runs_here:expr } $($rules_module:ident :: $rule:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $rule() {
                    if let Err(reason) = $runs_here {
                        eprintln!("skipped: {reason}");
                        return;
                    }
                    $crate::conformance::__check(stringify!($rule), $capabilities, $new);
                }
            )*
        }
    };
}

__conformance_rules!(__conformance_table {});

/// Makes module `$module` with one `#[test]` per rule of the kit, each
/// checking selectors made by `$new` (an `Fn() -> io::Result<S>`, `S:
/// Selector<String>`): a failure names its rule. The capabilities the
/// rules follow are those of `selector.backend()`, or the ones given.
///
/// A selector that only some kernels allow (io_uring, under a sysctl or a
/// seccomp filter) can say so with `runs_here = expr`, an
/// `Result<(), String>` checked at the start of each test: `Err(reason)`
/// skips the test, printing the reason. Use it only for what a machine
/// may refuse at run time; what a target lacks is better left uncompiled.
///
/// ```no_run
/// use tulip_selectors::{Backend, PollSelector};
///
/// tulip_selectors::conformance_tests!(poll, PollSelector::<String>::new);
/// tulip_selectors::conformance_tests!(
///     poll_declared,
///     || PollSelector::<String>::new(),
///     capabilities = Backend::Poll.capabilities()
/// );
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($module:ident, $new:expr $(,)?) => {
        $crate::__conformance_rules!(__conformance_test_fns { $module, $new, None, Ok::<(), String>(()) });
    };
    ($module:ident, $new:expr, capabilities = $capabilities:expr $(,)?) => {
        $crate::__conformance_rules!(__conformance_test_fns { $module, $new, Some($capabilities), Ok::<(), String>(()) });
    };
    ($module:ident, $new:expr, runs_here = $runs_here:expr $(,)?) => {
        $crate::__conformance_rules!(__conformance_test_fns { $module, $new, None, $runs_here });
    };
}

/// What [`check_all`] found: every rule that passed, and how long it took.
#[derive(Debug, Clone)]
pub struct Report {
    /// The capabilities the rules followed.
    pub capabilities: Capabilities,
    /// The rules that passed, with their durations.
    pub passed: Vec<(&'static str, Duration)>,
}

/// Checks every rule against selectors made by `new`, following the
/// capabilities their `backend()` declares; prints each rule as it passes
/// or fails.
///
/// # Panics
///
/// After running every rule, if any failed, naming each; or if `new` fails.
pub fn check_all<S, F>(new: F) -> Report
where
    S: Selector<String> + 'static,
    F: Fn() -> io::Result<S>,
{
    run_all(None, new)
}

/// [`check_all`], following `capabilities` instead of those the selector declares.
///
/// # Panics
///
/// As [`check_all`].
pub fn check_all_with<S, F>(capabilities: Capabilities, new: F) -> Report
where
    S: Selector<String> + 'static,
    F: Fn() -> io::Result<S>,
{
    run_all(Some(capabilities), new)
}

/// Checks one rule, by name (see [`RULES`]).
///
/// # Panics
///
/// If the rule fails, or there is no rule of that name.
pub fn check<S, F>(rule: &str, new: F)
where
    S: Selector<String> + 'static,
    F: Fn() -> io::Result<S>,
{
    __check(rule, None, new);
}

/// What [`conformance_tests!`](crate::conformance_tests) calls.
#[doc(hidden)]
pub fn __check<S, F>(rule: &str, capabilities: Option<Capabilities>, new: F)
where
    S: Selector<String> + 'static,
    F: Fn() -> io::Result<S>,
{
    let rule = RULES
        .iter()
        .find(|candidate| candidate.name == rule)
        .unwrap_or_else(|| panic!("the conformance kit has no rule named {rule:?}"));
    let open = boxed(&new);
    let subject = Subject { new: &open, capabilities: capabilities.unwrap_or_else(|| declared(&open)) };
    (rule.check)(&subject);
}

fn boxed<S, F>(new: &F) -> impl Fn() -> io::Result<Box<dyn Selector<String>>> + '_
where
    S: Selector<String> + 'static,
    F: Fn() -> io::Result<S>,
{
    move || new().map(|selector| Box::new(selector) as Box<dyn Selector<String>>)
}

/// The capabilities a selector made by `open` declares.
fn declared(open: &Open<'_>) -> Capabilities {
    let selector = open().unwrap_or_else(|err| panic!("cannot make the selector under test: {err}"));
    selector.backend().capabilities()
}

fn run_all<S, F>(capabilities: Option<Capabilities>, new: F) -> Report
where
    S: Selector<String> + 'static,
    F: Fn() -> io::Result<S>,
{
    let open = boxed(&new);
    let capabilities = capabilities.unwrap_or_else(|| declared(&open));
    let subject = Subject { new: &open, capabilities };
    println!("conformance: {} rules, following {capabilities}", RULES.len());
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for rule in RULES {
        let started = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| (rule.check)(&subject)));
        let took = started.elapsed();
        match outcome {
            Ok(()) => {
                println!("  ok      {:<48} {took:>9.1?}", rule.name);
                passed.push((rule.name, took));
            }
            Err(payload) => {
                let message = panic_message(&*payload);
                println!("  FAILED  {:<48} {}", rule.name, message.replace('\n', "\n          "));
                failed.push((rule.name, message));
            }
        }
    }
    println!("conformance: {} passed, {} failed", passed.len(), failed.len());
    if !failed.is_empty() {
        // One line per rule (the whole message was printed above).
        let list: Vec<String> = failed
            .iter()
            .map(|(name, message)| format!("  {name}: {}", message.lines().next().unwrap_or_default()))
            .collect();
        panic!("{} of {} conformance rules failed:\n{}", failed.len(), RULES.len(), list.join("\n"));
    }
    Report { capabilities, passed }
}

/// The message of a panic's payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}
