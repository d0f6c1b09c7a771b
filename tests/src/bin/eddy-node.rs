//! The `eddy` command line, exactly as `crates/eddy-cli` builds it, under a
//! name of its own so that it does not collide with `eddy` in the target
//! directory. The suites start it as brokers, workers and clients.

fn main() -> std::process::ExitCode {
    eddy_cli::main()
}
