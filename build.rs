//! Target probing for the `tulip` crate. Emits `tulip_eventfd` where the
//! loop's cross-thread wake-up can use `eventfd(2)` (Linux, Android); other
//! Unix targets use a non-blocking close-on-exec pipe. `rustc-check-cfg`
//! makes a misspelt cfg name a compile error.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tulip_eventfd)");
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(os.as_str(), "linux" | "android") {
        println!("cargo::rustc-cfg=tulip_eventfd");
    }
}
