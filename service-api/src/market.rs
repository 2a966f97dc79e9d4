//! Wire types of the market protocol between an agent's core and a client's core.
//!
//! Agent side (`core-lite serve --role agent --market-listen ADDR`):
//! - `GET  /market/v1/offerings` → [`OfferingList`] (offerings with supply left)
//! - `POST /market/v1/accept` [`AcceptRequest`] → [`SignedAccess`] (also the format of
//!   `access export` / `access import`)
//! - `POST /market/v1/cheque` [`Cheque`] → [`ChequeReceipt`]
//! - `GET  /market/v1/channels/{channelId}` → [`ChannelStatus`]
//!
//! Every signed object is signed over the SHA-256 of the JCS form of the object *without*
//! its `signature` field and *with* a `"type"` member naming what it is; the signing and the
//! checks live in core-lite, which holds the keys.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AccessMessage, ServiceStatus};

/// Paths of the market API.
pub mod paths {
    pub const OFFERINGS: &str = "/market/v1/offerings";
    pub const ACCEPT: &str = "/market/v1/accept";
    pub const CHEQUE: &str = "/market/v1/cheque";
    pub const CHANNELS: &str = "/market/v1/channels";
}

/// A signed offering: `{"offering":{…},"signature":"<base64 ed25519 of the hash bytes>"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedOffering {
    pub offering: Value,
    pub signature: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferingList {
    pub offerings: Vec<SignedOffering>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptRequest {
    pub offering_hash: String,
    /// Base units (1 PRIX = 10^8).
    pub deposit: u64,
    /// The client's ed25519 public key (base64); it signs the cheques of this channel.
    pub client_public_key: String,
    /// uuid v4 chosen by the client: a retried accept returns the same channel.
    pub nonce: String,
    /// The client's X25519 public key (base64, distinct from `clientPublicKey`): the agent
    /// answers a [`SealedAccess`] sealed to it (HPKE, [`crate::seal`]) instead of a
    /// [`SignedAccess`] in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_seal_key: Option<String>,
    /// Client's signature (proof that it holds the key).
    pub signature: String,
}

/// A signed access message sealed to the client ([`crate::seal`]): `ciphertext` is the JSON
/// of the [`SignedAccess`], sealed to `recipient` with `info` = [`SEAL_INFO`] and `aad` =
/// `channelId` `\n` `offeringHash`. The agent's signature (the offering's `agentPublicKey`,
/// `"type": "sealed-access"`) covers everything but `signature` and `offering`, so the
/// ciphertext too; the signed offering rides along as in [`SignedAccess`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedAccess {
    pub channel_id: String,
    pub offering_hash: String,
    /// [`crate::seal::SUITE`].
    pub suite: String,
    /// The client's X25519 public key it is sealed to (base64).
    pub recipient: String,
    /// HPKE encapsulated key (base64).
    pub enc: String,
    /// Sealed JSON of the [`SignedAccess`] (base64).
    pub ciphertext: String,
    pub offering: SignedOffering,
    pub signature: String,
}

/// HPKE `info` of a sealed access message.
pub const SEAL_INFO: &[u8] = b"core-lite sealed access v1";

impl SealedAccess {
    /// HPKE `aad` of this message.
    pub fn aad(&self) -> Vec<u8> {
        format!("{}\n{}", self.channel_id, self.offering_hash).into_bytes()
    }
}

/// What an accept answers, and what `access export`/`import` carry: a signed access message
/// in clear, or sealed to the client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AccessEnvelope {
    Sealed(SealedAccess),
    Signed(SignedAccess),
}

/// Headers of a signed market read (`GET /market/v1/channels/{id}`): the channel's client
/// key (base64 ed25519), unix seconds, a random nonce (16–64 characters) and its signature
/// over `"core-lite market read v1\n{ts}\n{nonce}\n{METHOD}\n{path}"` (base64). The agent answers 401
/// unless the key is the channel's, the time is within [`READ_WINDOW_SECS`] of its clock
/// and the signature was not seen before.
pub mod read_auth {
    pub const KEY: &str = "x-market-key";
    pub const TS: &str = "x-market-ts";
    pub const SIG: &str = "x-market-sig";
    pub const NONCE: &str = "x-market-nonce";
    /// Accepted clock difference, seconds.
    pub const READ_WINDOW_SECS: u64 = 60;

    /// The bytes signed for a read.
    pub fn message(ts: u64, nonce: &str, method: &str, path: &str) -> Vec<u8> {
        format!("core-lite market read v1\n{ts}\n{nonce}\n{method}\n{path}").into_bytes()
    }
}

/// An access message as its agent signed it. One format on every path: the market's accept
/// answer, the file `access export` writes and `access import` reads, and what the client's
/// core stores and checks again before GetAccess serves the message.
///
/// The signature (by the offering's `agentPublicKey`) covers `channelId`, `offeringHash` and
/// `access` (the object without `signature` and `offering`, with `"type": "access"`). The
/// signed offering rides along so that a client that never fetched it can check it: its hash
/// must be `offeringHash`, its own signature must verify, and its `agentPublicKey` is the key
/// that must have signed the access message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedAccess {
    /// The agent's channel.
    pub channel_id: String,
    /// The offering the channel was sold under (hex SHA-256 of its JCS form).
    pub offering_hash: String,
    pub access: AccessMessage,
    /// That offering, signed by the agent.
    pub offering: SignedOffering,
    /// Agent's signature (the offering's `agentPublicKey`).
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cheque {
    pub channel_id: String,
    /// Total paid on this channel so far (cumulative, base units).
    pub amount: u64,
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatus {
    pub channel_id: String,
    pub status: ServiceStatus,
    pub bytes_total: u64,
    pub units_used: u64,
    pub deposit: u64,
    /// Best cheque received.
    pub amount_paid: u64,
    /// What the agent's count of units costs (capped at the deposit).
    pub amount_due: u64,
}

/// What the agent answers to a cheque.
pub type ChequeReceipt = ChannelStatus;
