//! `ferric-agent`: the deploy ramdisk agent (`ferric_agent::cli`).

fn main() -> anyhow::Result<()> {
    ferric_agent::cli::main()
}
