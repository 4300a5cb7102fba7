//! The `deskgate` binary: a thin shell over the library (see `ops::cli`).

fn main() -> std::process::ExitCode {
    // One TLS provider for the whole process (rustls and lettre share it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    deskgate::ops::cli::main()
}
