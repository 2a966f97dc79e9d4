//! Signing the market's own messages with the client's key: accept requests and cheques
//! (the rules of a signature are in [`crate::signing`]).

use service_api::market::{AcceptRequest, Cheque};

use crate::error::Result;
use crate::keys::AgentKeys;
use crate::signing::{signing_bytes, to_value};

/// An accept request signed with the client's key (proof that it holds the key).
pub fn signed_accept(
    keys: &AgentKeys,
    offering_hash: &str,
    deposit: u64,
    nonce: &str,
    client_seal_key: Option<String>,
) -> Result<AcceptRequest> {
    let mut r = AcceptRequest {
        offering_hash: offering_hash.into(),
        deposit,
        client_public_key: keys.public_key_b64(),
        nonce: nonce.into(),
        client_seal_key,
        signature: String::new(),
    };
    r.signature = keys.sign(&signing_bytes("accept", &to_value(&r)?)?);
    Ok(r)
}

/// A cheque for the cumulative `amount`, signed with the channel's client key.
pub fn signed_cheque(keys: &AgentKeys, channel_id: &str, amount: u64) -> Result<Cheque> {
    let mut c = Cheque {
        channel_id: channel_id.into(),
        amount,
        signature: String::new(),
    };
    c.signature = keys.sign(&signing_bytes("cheque", &to_value(&c)?)?);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::check_sig;

    #[test]
    fn signatures_bind_the_kind() {
        let k = AgentKeys::generate();
        let c = signed_cheque(&k, "ch-1", 5).expect("cheque");
        assert!(check_sig(
            "cheque",
            &to_value(&c).expect("v"),
            &k.public_key_b64(),
            &c.signature
        )
        .is_ok());
        // The same bytes do not pass as another kind of message.
        assert!(check_sig(
            "accept",
            &to_value(&c).expect("v"),
            &k.public_key_b64(),
            &c.signature
        )
        .is_err());
        let mut forged = c.clone();
        forged.amount = 6;
        assert!(check_sig(
            "cheque",
            &to_value(&forged).expect("v"),
            &k.public_key_b64(),
            &forged.signature
        )
        .is_err());
    }
}
