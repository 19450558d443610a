//! Checksums of downloaded bytes: SHA-256 always, SHA-512 and MD5 when a job asks for
//! them, as lower-case hex, compared case-insensitively with the job's values.

use std::fmt;

use md5::Digest as _;

/// A checksum algorithm a job may give a value for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (`md5sum`).
    Md5,
    /// SHA-256 (`sha256sum`).
    Sha256,
    /// SHA-512 (`sha512sum`).
    Sha512,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        })
    }
}

/// The checksums a job expects (hex, any case); `None` where it gives none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checksums {
    /// Expected MD5.
    pub md5: Option<String>,
    /// Expected SHA-256.
    pub sha256: Option<String>,
    /// Expected SHA-512.
    pub sha512: Option<String>,
}

/// The checksums computed over a stream, as lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// SHA-256, always computed.
    pub sha256: String,
    /// SHA-512, when asked for.
    pub sha512: Option<String>,
    /// MD5, when asked for.
    pub md5: Option<String>,
}

/// One checksum that differs from the expected value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Which checksum.
    pub algorithm: Algorithm,
    /// The value computed.
    pub actual: String,
    /// The value expected.
    pub expected: String,
}

/// Hashes a stream fed in pieces.
pub struct Hasher {
    sha256: sha2::Sha256,
    sha512: Option<sha2::Sha512>,
    md5: Option<md5::Md5>,
}

impl Hasher {
    /// A hasher computing SHA-256, plus SHA-512 and MD5 when asked.
    pub fn new(sha512: bool, md5: bool) -> Self {
        Hasher {
            sha256: sha2::Sha256::new(),
            sha512: sha512.then(sha2::Sha512::new),
            md5: md5.then(md5::Md5::new),
        }
    }

    /// A hasher computing what `expected` can be checked against.
    pub fn for_expected(expected: &Checksums) -> Self {
        Hasher::new(expected.sha512.is_some(), expected.md5.is_some())
    }

    /// Feeds the next piece of the stream.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(h) = self.sha512.as_mut() {
            h.update(bytes);
        }
        if let Some(h) = self.md5.as_mut() {
            h.update(bytes);
        }
    }

    /// The digests of everything fed.
    pub fn finish(self) -> Digests {
        Digests {
            sha256: hex(&self.sha256.finalize()),
            sha512: self.sha512.map(|h| hex(&h.finalize())),
            md5: self.md5.map(|h| hex(&h.finalize())),
        }
    }
}

impl Digests {
    /// The first checksum (md5, sha256, sha512 in that order) that differs from
    /// `expected`; checksums not expected, or not computed, are not compared.
    pub fn verify(&self, expected: &Checksums) -> Result<(), Mismatch> {
        let pairs = [
            (Algorithm::Md5, self.md5.as_deref(), expected.md5.as_deref()),
            (
                Algorithm::Sha256,
                Some(self.sha256.as_str()),
                expected.sha256.as_deref(),
            ),
            (
                Algorithm::Sha512,
                self.sha512.as_deref(),
                expected.sha512.as_deref(),
            ),
        ];
        for (algorithm, actual, wanted) in pairs {
            if let (Some(actual), Some(wanted)) = (actual, wanted)
                && !actual.eq_ignore_ascii_case(wanted)
            {
                return Err(Mismatch {
                    algorithm,
                    actual: actual.to_string(),
                    expected: wanted.to_string(),
                });
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_in_pieces() {
        let mut h = Hasher::new(true, true);
        h.update(b"ab");
        h.update(b"c");
        let d = h.finish();
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.md5.as_deref(), Some("900150983cd24fb0d6963f7d28e17f72"));
        assert!(d.sha512.as_deref().unwrap().starts_with("ddaf35a193617aba"));
        assert_eq!(Hasher::new(false, false).finish().md5, None);
    }

    #[test]
    fn verify_compares_case_insensitively_and_names_the_first_mismatch() {
        let d = Hasher::new(false, true).finish();
        let upper = Checksums {
            sha256: Some(d.sha256.to_uppercase()),
            md5: d.md5.clone(),
            ..Default::default()
        };
        assert_eq!(d.verify(&upper), Ok(()));
        let bad = Checksums {
            md5: Some("0".repeat(32)),
            sha256: Some("0".repeat(64)),
            ..Default::default()
        };
        let mismatch = d.verify(&bad).unwrap_err();
        assert_eq!(mismatch.algorithm, Algorithm::Md5);
        assert_eq!(mismatch.expected, "0".repeat(32));
        // sha512 expected but not computed: not compared.
        let only512 = Checksums {
            sha512: Some("00".into()),
            ..Default::default()
        };
        assert_eq!(d.verify(&only512), Ok(()));
    }
}
