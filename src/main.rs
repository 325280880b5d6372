// The program's allocator, chosen for the hub's many small, short-lived allocations (Cargo.toml
// says why); tests and libraries keep the system's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    herald::cli::main()
}
