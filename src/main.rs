// The program's allocator, chosen for the hub's many small, short-lived allocations (Cargo.toml
// says why); tests and libraries keep the system's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // No transparent huge pages for this process (and the simulators it starts, which inherit
    // the setting). mimalloc asks for them on its arenas, and the kernel then zeroes a whole
    // 2 MiB page on its first touch, however little of it is used: it was a fifth of the CPU
    // of `bench deliver`, and it kept 110 MiB more resident in a hub whose broker holds 10,000
    // devices. Refused (an old kernel), the process runs as before.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    herald::cli::main()
}
