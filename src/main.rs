// mimalloc rather than glibc's malloc: a run of many short jobs spent a tenth
// of trun's own time in glibc's allocator (perf), which mimalloc's per-thread
// free lists mostly avoid.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(trun::cli::main());
}
