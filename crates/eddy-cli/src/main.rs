//! The `eddy` binary; everything lives in the `eddy_cli` library.

fn main() -> std::process::ExitCode {
    eddy_cli::main()
}
