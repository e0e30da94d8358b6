//! Names what this target's kernel offers, once, as cfg aliases:
//! `tulip_epoll` (Linux, Android), `tulip_kqueue` (Apple and the BSDs),
//! `tulip_eventfd` (Linux, Android: the waker needs one fd, not a pipe) and
//! `tulip_pipe2` (`pipe2(2)` makes a pipe close-on-exec and non-blocking
//! in one call), `tulip_dup3` (`dup3(2)` sets close-on-exec as it
//! duplicates), `tulip_io_uring` (Linux; whether the kernel allows it is
//! asked at run time). `select` and `poll` exist on every Unix and need no
//! alias.
//!
//! The same list reaches the crates that depend on this one through
//! `links` metadata: `DEP_TULIP_SELECTORS_CFG` in their build scripts
//! holds the aliases enabled here, comma-separated (the `tulip` crate
//! gates its per-backend tests on `tulip_epoll`, `tulip_kqueue` and
//! `tulip_io_uring` so).

fn main() {
    for alias in
        ["tulip_epoll", "tulip_kqueue", "tulip_eventfd", "tulip_pipe2", "tulip_dup3", "tulip_io_uring"]
    {
        println!("cargo::rustc-check-cfg=cfg({alias})");
    }
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let linux = matches!(os.as_str(), "linux" | "android");
    let apple = matches!(os.as_str(), "macos" | "ios" | "tvos" | "watchos" | "visionos");
    let bsd = matches!(os.as_str(), "freebsd" | "netbsd" | "openbsd" | "dragonfly");
    let mut enabled = Vec::new();
    if linux {
        enabled.extend(["tulip_epoll", "tulip_eventfd"]);
    }
    if apple || bsd {
        enabled.push("tulip_kqueue");
    }
    if linux || bsd {
        enabled.extend(["tulip_pipe2", "tulip_dup3"]);
    }
    if os == "linux" {
        enabled.push("tulip_io_uring");
    }
    for alias in &enabled {
        println!("cargo::rustc-cfg={alias}");
    }
    println!("cargo::metadata=cfg={}", enabled.join(","));
}
