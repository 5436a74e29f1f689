//! `ferrocep`: run CEP pattern specs over event streams (see the `ferrocep` library).

#[global_allocator]
static GLOBAL: ferrocep::alloc::Allocator = ferrocep::alloc::Allocator;

fn main() {
    if std::env::var_os("FERROCEP_HUGE_PAGES").is_some_and(|v| v == "off") {
        ferrocep::alloc::disable();
    }
    std::process::exit(ferrocep::cli::main());
}
