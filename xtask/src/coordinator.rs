//! Coordinator benchmark against Debian's lava-coordinator.

pub fn bench(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("coordinator bench is not implemented yet")
}
