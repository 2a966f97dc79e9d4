//! Building and signing an offering (agent) and verifying it (client).

use super::*;

#[test]
fn build_and_verify_round_trip() {
    let m = vpn();
    let agent = AgentKeys::generate();
    let lookup = |h: &str| (h == m.offering_hash).then(|| m.offering_template.clone());
    let (signed, hash, terms) = build_offering(
        &m.offering_template,
        &m.offering_hash,
        "prod-1",
        &agent,
        &input(),
        None,
    )
    .expect("build");
    assert_eq!(hash, offering_hash(&signed.offering).expect("hash"));
    assert_eq!(terms.product, "prod-1");
    assert_eq!(terms.agent_public_key, agent.public_key_b64());
    assert!(is_uuid_v4(&terms.nonce));

    // Through the file format.
    let text = serde_json::to_string_pretty(&signed).expect("ser");
    let parsed: SignedOffering = serde_json::from_str(&text).expect("parse");
    let (h2, t2) = verify_offering(&parsed, lookup).expect("verifies");
    assert_eq!(h2, hash);
    assert_eq!(t2, terms);

    // Publishing the same input twice gives a new nonce and so a new hash.
    let (_, hash_b, _) = build_offering(
        &m.offering_template,
        &m.offering_hash,
        "prod-1",
        &agent,
        &input(),
        None,
    )
    .expect("build");
    assert_ne!(hash, hash_b);

    // A changed field breaks the signature.
    let mut changed = signed.clone();
    changed.offering["unitPrice"] = json!(0.0001);
    assert!(matches!(
        verify_offering(&changed, lookup),
        Err(OfferingError::BadSignature { .. })
    ));

    // Signed by another key (with the true agent's key in the offering).
    let other = AgentKeys::generate();
    let mut forged = signed.clone();
    forged.signature = other.sign(&hex::decode(&hash).expect("hex"));
    assert!(matches!(
        verify_offering(&forged, lookup),
        Err(OfferingError::BadSignature { .. })
    ));
    // Missing/garbage signature, bad agentPublicKey.
    let mut nosig = signed.clone();
    nosig.signature = String::new();
    assert!(matches!(
        verify_offering(&nosig, lookup),
        Err(OfferingError::BadSignature { .. })
    ));
    let mut badkey = signed.clone();
    badkey.offering["agentPublicKey"] = json!("not-a-key");
    assert!(matches!(
        verify_offering(&badkey, lookup),
        Err(OfferingError::BadSignature { .. })
    ));
    let mut nokey = signed.clone();
    nokey
        .offering
        .as_object_mut()
        .expect("obj")
        .remove("agentPublicKey");
    assert!(matches!(
        verify_offering(&nokey, lookup),
        Err(OfferingError::BadSignature { .. })
    ));

    // Unknown template.
    let err = verify_offering(&signed, |_| None).expect_err("unknown");
    assert!(
        matches!(&err, OfferingError::UnknownTemplate { hash } if *hash == m.offering_hash),
        "{err}"
    );

    // Correctly signed but invalid: the client still rejects it.
    let mut bad = signed.offering.clone();
    bad["supply"] = json!(0);
    let digest = crate::jcs::sha256_jcs(&bad).expect("digest");
    let resigned = SignedOffering {
        offering: bad,
        signature: agent.sign(&digest),
    };
    match verify_offering(&resigned, lookup) {
        Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer("/supply"), "{inv}"),
        other => panic!("expected Invalid, got {other:?}"),
    }

    // Unknown fields of the signed file are refused.
    let extra = json!({"offering": {}, "signature": "", "x": 1});
    assert!(serde_json::from_value::<SignedOffering>(extra).is_err());
}

#[test]
fn build_rejects_core_fields_and_invalid_input() {
    let m = vpn();
    let agent = AgentKeys::generate();
    for f in CORE_FILLED_FIELDS {
        let mut v = input();
        v[f] = json!("x");
        match build_offering(
            &m.offering_template,
            &m.offering_hash,
            "p",
            &agent,
            &v,
            None,
        ) {
            Err(OfferingError::Invalid(inv)) => {
                assert!(inv.has_pointer(&format!("/{f}")), "{inv}")
            }
            other => panic!("{f}: expected Invalid, got {other:?}"),
        }
    }
    let mut v = input();
    v["minUnits"] = json!(5000);
    match build_offering(
        &m.offering_template,
        &m.offering_hash,
        "p",
        &agent,
        &v,
        None,
    ) {
        Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer("/minUnits"), "{inv}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    // A wrong template hash from the caller is caught too.
    match build_offering(
        &m.offering_template,
        &"0".repeat(64),
        "p",
        &agent,
        &input(),
        None,
    ) {
        Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer("/templateHash"), "{inv}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    match build_offering(
        &m.offering_template,
        &m.offering_hash,
        "p",
        &agent,
        &json!(3),
        None,
    ) {
        Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer(""), "{inv}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}
