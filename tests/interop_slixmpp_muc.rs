//! Interop, group chat (XEP-0045) with slixmpp (PyPI) as the client: `tests/interop/muc.py`
//! drives four accounts and a second session of one of them through slixmpp's xep_0045
//! plugin (with xep_0249, xep_0308, xep_0410, xep_0421, xep_0424) against a fresh kleiber:
//! service discovery, an instant room and a room configured with the `muc#roomconfig` form
//! (get_room_config / set_room_config), entering with history (maxstanzas, since, maxchars),
//! reflection, occupant ids, a correction and a retraction, the subject, a nick change (303)
//! and a nick conflict, private messages through the room, two sessions under one nick,
//! mediated invitations and declines, direct invitations, voice (moderated room, voice
//! request), kick, admin/member/outcast affiliations and their lists, members-only (322,
//! 321, registration-required), ban (301), self-ping, a non-anonymous room (172, 100), a
//! password-protected room and the destruction of a room with a reason and an alternate
//! venue. The script's docstring lists every assertion.
//! Skipped without slixmpp unless `KLEIBER_REQUIRE_INTEROP=1` (as in `interop_slixmpp.rs`).

mod common;
use common::*;

#[test]
fn slixmpp_uses_group_chat() {
    let Some(py) = interop_python_or_skip() else {
        return;
    };
    let s = TestServer::start();
    let out = run_interop(&py, "muc.py", s.starttls.port(), "starttls", "muc");
    println!("{out}");
    assert!(out.contains("OK: multi-user chat"), "{out}");
    // The lounge was persistent: its record went with the room's destruction; the instant
    // room was never stored.
    let rooms = &s.shared().store.muc;
    for room in ["mucinstant", "muclounge"] {
        let jid = format!("{room}@conference.localhost");
        assert!(rooms.get(&jid).unwrap().is_none(), "{jid} stored");
    }
}
