//! Per-packet authenticated encryption: AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 (ring).
//!
//! A sealed body is `nonce(12) || ciphertext || tag(16)`, with the packed frame header as
//! associated data, so a flipped bit anywhere in the header or the body fails authentication.
//! The layout is the one `cryptography`'s `AESGCM`/`ChaCha20Poly1305` use when the nonce is
//! prepended. Nonces are 96 random bits from the OS CSPRNG for every packet.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// Nonces handed out per refill of a thread's pool.
const POOL_NONCES: usize = 256;

// NOTE: one getrandom call costs about 440 ns on the build machine (os.urandom(12)), more than
// sealing a 512-byte body; nonces are taken from the OS CSPRNG 256 at a time instead. Every
// byte still comes from the OS, each thread has its own pool, and a forked child throws away
// what it inherited (pthread_atfork), so parent and child never share a nonce.
struct NoncePool {
    bytes: [u8; POOL_NONCES * NONCE_LEN],
    next: usize,
    generation: u64,
}

/// Bumped in the child after every fork(): pools filled before it are stale there.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static WATCH_FORKS: Once = Once::new();

extern "C" fn forked_child() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

thread_local! {
    static NONCES: RefCell<NoncePool> = const {
        RefCell::new(NoncePool {
            bytes: [0; POOL_NONCES * NONCE_LEN],
            next: POOL_NONCES * NONCE_LEN,
            generation: u64::MAX,
        })
    };
}

/// A fresh random nonce.
fn fresh_nonce(rng: &SystemRandom) -> Result<[u8; NONCE_LEN]> {
    WATCH_FORKS.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic, as fork handlers must.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    });
    NONCES.with_borrow_mut(|pool| {
        let generation = FORK_GENERATION.load(Ordering::SeqCst);
        if pool.next == pool.bytes.len() || pool.generation != generation {
            rng.fill(&mut pool.bytes)
                .map_err(|_| Error::Io(std::io::Error::other("the OS random source failed")))?;
            pool.next = 0;
            pool.generation = generation;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&pool.bytes[pool.next..pool.next + NONCE_LEN]);
        pool.bytes[pool.next..pool.next + NONCE_LEN].fill(0); // handed out once, then gone
        pool.next += NONCE_LEN;
        Ok(nonce)
    })
}

/// Bytes a sealed body has beyond its plaintext: the nonce and the tag.
pub const OVERHEAD: usize = NONCE_LEN + 16;

/// An AEAD algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "aes-128-gcm" => Algorithm::Aes128Gcm,
            "aes-256-gcm" => Algorithm::Aes256Gcm,
            "chacha20-poly1305" => Algorithm::ChaCha20Poly1305,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown cipher {name:?}: use aes-128-gcm, aes-256-gcm or chacha20-poly1305"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Aes128Gcm => "aes-128-gcm",
            Algorithm::Aes256Gcm => "aes-256-gcm",
            Algorithm::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    fn ring(self) -> &'static aead::Algorithm {
        match self {
            Algorithm::Aes128Gcm => &aead::AES_128_GCM,
            Algorithm::Aes256Gcm => &aead::AES_256_GCM,
            Algorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    /// The key size in bytes.
    pub fn key_len(self) -> usize {
        self.ring().key_len()
    }
}

/// A keyed cipher.
pub struct Cipher {
    pub algorithm: Algorithm,
    key: LessSafeKey,
    /// The key bytes, kept to compare formats (`PacketFormat.__eq__`); never printed.
    raw_key: Box<[u8]>,
    rng: SystemRandom,
}

impl PartialEq for Cipher {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm && self.raw_key == other.raw_key
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Cipher")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Cipher {
    pub fn new(algorithm: Algorithm, key: &[u8]) -> Result<Self> {
        if key.len() != algorithm.key_len() {
            return Err(Error::InvalidArgument(format!(
                "{} takes a {}-byte key, not {} bytes",
                algorithm.name(),
                algorithm.key_len(),
                key.len()
            )));
        }
        let raw_key = key.into();
        let key = UnboundKey::new(algorithm.ring(), key)
            .map_err(|_| Error::InvalidArgument("invalid key".into()))?;
        Ok(Cipher {
            algorithm,
            key: LessSafeKey::new(key),
            raw_key,
            rng: SystemRandom::new(),
        })
    }

    /// Appends `nonce || ciphertext || tag` for `plaintext` to `out`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let nonce = fresh_nonce(&self.rng)?;
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[start..],
            )
            .map_err(|_| Error::InvalidArgument("plaintext too long for one packet".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Appends the plaintext of a sealed body to `out`, or fails with `AuthenticationError`.
    pub fn open(&self, aad: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if sealed.len() < OVERHEAD {
            return Err(Error::Authentication(format!(
                "encrypted body of {} bytes is shorter than its nonce and tag ({OVERHEAD})",
                sealed.len()
            )));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("NONCE_LEN bytes");
        let start = out.len();
        out.extend_from_slice(rest);
        match self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut out[start..])
        {
            Ok(plain) => {
                let n = plain.len();
                out.truncate(start + n);
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(Error::Authentication(format!(
                    "{} authentication failed: wrong key, or the packet was altered",
                    self.algorithm.name()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Algorithm; 3] = [
        Algorithm::Aes128Gcm,
        Algorithm::Aes256Gcm,
        Algorithm::ChaCha20Poly1305,
    ];

    #[test]
    fn round_trip_and_layout() {
        for algorithm in ALL {
            let c = Cipher::new(algorithm, &vec![7; algorithm.key_len()]).unwrap();
            let mut sealed = Vec::new();
            c.seal(b"header", b"secret", &mut sealed).unwrap();
            assert_eq!(sealed.len(), 6 + OVERHEAD);
            let mut plain = Vec::new();
            c.open(b"header", &sealed, &mut plain).unwrap();
            assert_eq!(plain, b"secret");
        }
    }

    #[test]
    fn any_flipped_bit_fails() {
        let c = Cipher::new(Algorithm::Aes256Gcm, &[1; 32]).unwrap();
        let mut sealed = Vec::new();
        c.seal(b"hdr", b"payload", &mut sealed).unwrap();
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(matches!(
                c.open(b"hdr", &bad, &mut Vec::new()),
                Err(Error::Authentication(_))
            ));
        }
        assert!(c.open(b"hdR", &sealed, &mut Vec::new()).is_err());
    }

    #[test]
    fn pooled_nonces_never_repeat_across_refills_and_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let rng = SystemRandom::new();
                    (0..3 * POOL_NONCES)
                        .map(|_| fresh_nonce(&rng).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for h in handles {
            for n in h.join().unwrap() {
                assert!(all.insert(n), "a nonce repeated");
            }
        }
    }

    #[test]
    fn nonces_differ() {
        let c = Cipher::new(Algorithm::ChaCha20Poly1305, &[3; 32]).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.seal(b"", b"same", &mut a).unwrap();
        c.seal(b"", b"same", &mut b).unwrap();
        assert_ne!(a[..12], b[..12]);
    }

    #[test]
    fn wrong_key_size_is_rejected() {
        assert!(matches!(
            Cipher::new(Algorithm::Aes128Gcm, &[0; 32]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
