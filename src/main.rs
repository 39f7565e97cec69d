//! `ferric`: the service, its tools and its labs.

fn main() -> anyhow::Result<()> {
    Ok(())
}
