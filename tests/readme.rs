//! The README's backend table is made from `Backend::capabilities`: this
//! test renders the table from the data and fails if the README differs,
//! printing the table to paste.

use tulip::selectors::{Backend, Capabilities};

/// A resolution as a reader writes it: `1 ms`, `1 µs`, `1 ns`.
fn resolution(caps: &Capabilities) -> String {
    let nanos = caps.timeout_resolution.as_nanos();
    match nanos {
        n if n % 1_000_000 == 0 => format!("{} ms", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{} µs", n / 1_000),
        n => format!("{n} ns"),
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// The table, one row per backend of `Backend::ALL`.
fn backend_table() -> String {
    let mut table = String::from(
        "| backend | system calls | platforms | one `select` costs | kernel object keeps the list | \
         `register` makes a syscall | timeouts to | fds | a registered fd closed meanwhile | \
         the kernel watches | a regular file |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for backend in Backend::ALL {
        let caps = backend.capabilities();
        let calls: Vec<String> = caps.syscalls.iter().map(|call| format!("`{call}`")).collect();
        table += &format!(
            "| `{backend}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            calls.join(", "),
            caps.platforms,
            caps.select_cost,
            yes_no(caps.kernel_object),
            yes_no(caps.register_syscall),
            resolution(&caps),
            caps.fd_limit,
            caps.closed_fd,
            caps.watches,
            caps.regular_file,
        );
    }
    table
}

#[test]
fn the_readme_backend_table_is_the_capabilities() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = backend_table();
    assert!(
        readme.contains(&table),
        "README.md's backend table differs from Backend::capabilities; it should read:\n\n{table}"
    );
}
