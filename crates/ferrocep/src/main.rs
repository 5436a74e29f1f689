//! `ferrocep`: run CEP pattern specs over event streams (see the `ferrocep` library).

fn main() {
    std::process::exit(ferrocep::cli::main());
}
