//! Target probing for the `tulip` crate: names, once, what the socket and
//! signal code may use here, as cfg aliases.
//!
//! - `tulip_socket_flags`: `socket(2)` takes `SOCK_NONBLOCK | SOCK_CLOEXEC`
//!   and `send(2)` takes `MSG_NOSIGNAL` (Linux, Android, the BSDs but Apple's).
//! - `tulip_errno_location` / `tulip_errno_double_underscore`: the name of
//!   the function behind `errno` (`__errno_location`, `__errno`; else `__error`).
//! - `tulip_sigrtmax`: real-time signals exist, so `NSIG` is `SIGRTMAX() + 1`.
//! - `tulip_coarse_clock`: `CLOCK_MONOTONIC_COARSE` exists (Linux, Android).
//! - `tulip_pidfd`: `pidfd_open(2)` may exist (Linux; the kernel must be 5.3
//!   or newer, which the child watcher checks at run time).
//! - `tulip_epoll` / `tulip_kqueue` / `tulip_io_uring`: that backend is built
//!   (what the integration tests instantiate per backend). Not decided
//!   here: `tulip-selectors` decides, and its build script hands its
//!   aliases over as `links` metadata (`DEP_TULIP_SELECTORS_CFG`).
//!
//! `rustc-check-cfg` makes a misspelt alias a compile error.

fn main() {
    let aliases = [
        "tulip_socket_flags",
        "tulip_errno_location",
        "tulip_errno_double_underscore",
        "tulip_sigrtmax",
        "tulip_coarse_clock",
        "tulip_pidfd",
        "tulip_epoll",
        "tulip_kqueue",
        "tulip_io_uring",
    ];
    for alias in aliases {
        println!("cargo::rustc-check-cfg=cfg({alias})");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DEP_TULIP_SELECTORS_CFG");
    let selectors = std::env::var("DEP_TULIP_SELECTORS_CFG")
        .expect("tulip-selectors' build script hands over its cfg aliases (links metadata)");
    for alias in selectors
        .split(',')
        .filter(|alias| matches!(*alias, "tulip_epoll" | "tulip_kqueue" | "tulip_io_uring"))
    {
        println!("cargo::rustc-cfg={alias}");
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let os = os.as_str();
    let enable = |alias: &str, on: bool| {
        if on {
            println!("cargo::rustc-cfg={alias}");
        }
    };
    enable(
        "tulip_socket_flags",
        matches!(os, "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"),
    );
    enable("tulip_errno_location", matches!(os, "linux" | "dragonfly"));
    enable("tulip_errno_double_underscore", matches!(os, "android" | "netbsd" | "openbsd"));
    enable("tulip_sigrtmax", matches!(os, "linux" | "android"));
    enable("tulip_coarse_clock", matches!(os, "linux" | "android"));
    enable("tulip_pidfd", os == "linux");
}
