//! End-to-end encryption as Joplin does it (spec `e2ee.md`): master keys in `info.json`, the
//! methods (new WebCrypto-style KeyV1/FileV1/StringV1 and the sjcl ones), the JED container,
//! and the encrypted item form. Usable on its own for reading (verify, later exports) and
//! writing (restore).
//!
//! - [`cipher`]: one block with one method;
//! - [`jed`]: the container and chunking;
//! - [`keys`]: `info.json` master keys, the master password, the unlocked [`Keyring`];
//! - [`form`]: items and blobs to and from their form on the target;
//! - [`setup`]: a new master key for a new target.

pub mod cipher;
pub mod form;
pub mod jed;
mod jsescape;
pub mod keys;
pub mod setup;

pub use cipher::Method;
pub use form::{can_be_encrypted, is_encrypted};
pub use keys::{E2eeInfo, Keyring, PasswordArgs, PASSWORD_ENV};
