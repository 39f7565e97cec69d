//! `ferric-agent`: the deploy ramdisk agent.

fn main() -> anyhow::Result<()> {
    Ok(())
}
