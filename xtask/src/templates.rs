//! Template-rendering conformance and benchmark (lava-device).

pub fn conformance(_filter: Option<&str>) -> anyhow::Result<bool> {
    anyhow::bail!("templates conformance is not implemented yet")
}

pub fn bench(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("render bench is not implemented yet")
}
