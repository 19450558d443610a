//! Console matcher throughput benchmark (lava-connection).

pub fn bench(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("console bench is not implemented yet")
}
