//! Interop, PEP (XEP-0163) as OMEMO uses it, with slixmpp (PyPI) as the client
//! (`tests/interop/slixmpp_pep.py`): one account publishes its OMEMO device list and bundle,
//! legacy (`eu.siacs.conversations.axolotl`) and OMEMO 2 (`urn:xmpp:omemo:2`), with slixmpp's
//! xep_0060 `publish()` and publish-options `access_model=open`; a publish whose
//! publish-options do not match the node is refused with `precondition-not-met`; another
//! account with no subscription fetches all four (`get_items` / `get_item`) and gets the
//! payloads back unchanged. Once the two are mutually subscribed, the second, whose XEP-0115
//! caps (built by slixmpp's xep_0115 / xep_0163 `add_interest`) ask for `+notify` on the device
//! lists, gets their last items, then a notification of each republished device list, and none
//! of the republished bundle. The nodes end stored with access model `open`.
//! Skipped without slixmpp unless `KLEIBER_REQUIRE_INTEROP=1` (as in `interop_slixmpp.rs`).

mod common;
use common::*;

#[test]
fn slixmpp_publishes_and_fetches_omemo_keys() {
    let Some(py) = interop_python_or_skip() else {
        return;
    };
    let s = TestServer::start();
    let out = run_interop(&py, "slixmpp_pep.py", s.starttls.port(), "starttls", "pep");
    assert!(
        out.contains("OK: OMEMO device lists and bundles (legacy and OMEMO 2) published"),
        "{out}"
    );
    // A fresh server knows no caps: it asked b for its disco#info before notifying it.
    assert!(
        out.contains("b: the server asks for our disco#info"),
        "{out}"
    );
    let pep = &s.shared().store.pep;
    for node in [
        "eu.siacs.conversations.axolotl.devicelist",
        "urn:xmpp:omemo:2:devices",
        "urn:xmpp:omemo:2:bundles",
    ] {
        let n = pep
            .get("localhost", "pepa", node)
            .unwrap()
            .unwrap_or_else(|| panic!("{node} stored"));
        assert_eq!(
            n.access_model,
            kleiber::store::pep::AccessModel::Open,
            "{node}: {n:?}"
        );
    }
    // The republished device lists hold one item, with both devices.
    let list = pep
        .get(
            "localhost",
            "pepa",
            "eu.siacs.conversations.axolotl.devicelist",
        )
        .unwrap()
        .unwrap();
    assert_eq!(list.items.len(), 1, "{list:?}");
    assert_eq!(list.items[0].0, "current");
    assert_eq!(list.items[0].1.matches("<device ").count(), 2, "{list:?}");
    // The OMEMO 2 bundles node keeps every device's bundle (max_items=max).
    let bundles = pep
        .get("localhost", "pepa", "urn:xmpp:omemo:2:bundles")
        .unwrap()
        .unwrap();
    assert_eq!(bundles.max_items, 256, "{bundles:?}");
    // b published nothing.
    assert!(pep
        .get(
            "localhost",
            "pepb",
            "eu.siacs.conversations.axolotl.devicelist"
        )
        .unwrap()
        .is_none());
}
