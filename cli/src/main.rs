//! `micro`: the terminal face of the platform (see the `micro_cli` library).

fn main() {
    micro_cli::main()
}
