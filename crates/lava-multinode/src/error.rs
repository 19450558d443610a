//! How the client's errors become the dispatcher's [`LavaError`], so callers convert with
//! `?`: each keeps its text and gets the LAVA class the MultiNode protocol gives it.

use lava_error::{ErrorKind, LavaError};

use crate::client::ClientError;

/// A coordinator call's failure: a call that timed out is `MultinodeProtocolTimeoutError`,
/// any other failure (refused, too long, unreachable, an unusable reply) a `JobError`, as
/// the protocol classes them.
impl From<ClientError> for LavaError {
    fn from(error: ClientError) -> Self {
        let kind = match error {
            ClientError::Timeout { .. } => ErrorKind::MultinodeTimeout,
            _ => ErrorKind::Job,
        };
        LavaError::new(kind, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn client_failures() {
        let timeout = LavaError::from(ClientError::Timeout {
            operation: "lava_wait".into(),
            waited: Duration::from_secs(1),
            attempts: 3,
        });
        assert_eq!(timeout.kind, ErrorKind::MultinodeTimeout);
        let nack = LavaError::from(ClientError::Nack {
            operation: "lava_send".into(),
        });
        assert_eq!(nack.kind, ErrorKind::Job);
        assert_eq!(nack.message, "coordinator refused lava_send (nack)");
    }
}
