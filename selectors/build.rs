//! Names the readiness mechanisms this target has, once, as cfg aliases:
//! `tulip_epoll` (Linux, Android), `tulip_io_uring` (Linux; whether the
//! kernel allows it is asked at run time) and `tulip_kqueue` (Apple and the
//! BSDs). `select` and `poll` exist on every Unix and need no alias.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tulip_epoll)");
    println!("cargo::rustc-check-cfg=cfg(tulip_io_uring)");
    println!("cargo::rustc-check-cfg=cfg(tulip_kqueue)");
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    match os.as_str() {
        "linux" | "android" => println!("cargo::rustc-cfg=tulip_epoll"),
        "macos" | "ios" | "tvos" | "watchos" | "visionos" | "freebsd" | "netbsd" | "openbsd"
        | "dragonfly" => println!("cargo::rustc-cfg=tulip_kqueue"),
        _ => {}
    }
    if os == "linux" {
        println!("cargo::rustc-cfg=tulip_io_uring");
    }
}
