//! The privacy policy `/privacy`, modelled on the operator's German policy and written from
//! `doc/data-inventory.md`. Every period and limit comes from the running configuration, and
//! a sentence about a feature appears only when the feature is on, so the page never
//! promises what the server does not do. One function per section.

use super::html::{esc, uri_link, Lang, Page};
use crate::config::Config;

/// The whole policy for `host`; `log_level` is the running log filter (JIDs appear in the
/// log only at `debug` and `trace`).
pub fn page(lang: Lang, host: &str, config: &Config, log_level: log::LevelFilter) -> String {
    let title = lang.t("Privacy policy", "Datenschutzerklärung");
    let mut page = Page::new(lang, "/privacy", &format!("{title}: {host}"));
    page.p(&lang.t(
        format!("This page says what the server <strong>{}</strong> stores about you, why, and for how long. Its figures are read from the server's running configuration.", esc(host)),
        format!("Diese Seite sagt, welche Daten der Server <strong>{}</strong> über Dich speichert, wozu und wie lange. Die Zahlen stammen aus der laufenden Konfiguration des Servers.", esc(host)),
    ));
    stored(&mut page, config);
    retention(&mut page, config);
    not_stored(&mut page, config, log_level);
    use_of_data(&mut page, config);
    gateways(&mut page, host, config);
    file_transfers(&mut page, config);
    push_notifications(&mut page, config);
    password(&mut page);
    access(&mut page, config);
    page.finish()
}

/// "What is stored?": everything kept per account.
fn stored(page: &mut Page, config: &Config) {
    let lang = page.lang;
    page.h2(lang.t("What is stored?", "Was für Daten werden gespeichert?"));
    let o = &config.offline;
    let mut items: Vec<String> = [
        ("Your <strong>Jabber ID</strong> (JID): user name and domain, which identify the account.",
         "Die <strong>Jabber-ID</strong> (JID), bestehend aus Benutzername und Domain, zur Identifikation des Benutzerkontos."),
        ("Your <strong>password</strong>, not as such but as cryptographic hashes (bcrypt and SCRAM), to check it when your client logs in.",
         "Das <strong>Passwort</strong>, nicht im Klartext, sondern kryptografisch gesichert (bcrypt und SCRAM), zur Prüfung bei der Anmeldung des Clients."),
        ("The <strong>time of your last login</strong> (so that unused accounts can be deleted) and of your last logout (your contacts may ask when you were last online).",
         "<strong>Datum und Uhrzeit der letzten Anmeldung</strong> (damit unbenutzte Benutzerkonten gelöscht werden können) und der letzten Abmeldung (Deine Kontakte können fragen, wann Du zuletzt online warst)."),
        ("Your <strong>contact list</strong> (roster): your contacts with the names and groups you give them, in which direction(s) presence is shared, pending requests; and your block list. It is kept so that every client you log in from has the same contacts.",
         "Die <strong>Kontaktliste</strong> (Roster): Deine Kontakte mit den Namen und Gruppen, die Du ihnen gibst, in welche Richtung(en) die Sichtbarkeit besteht, offene Anfragen; außerdem die Liste blockierter Adressen. Sie wird gespeichert, damit jeder Client, mit dem Du Dich anmeldest, die gleichen Kontakte hat."),
    ]
    .iter()
    .map(|(en, de)| lang.t(*en, *de).to_owned())
    .collect();
    items.push(lang.t(
        format!("<strong>Messages that arrive while you are offline</strong>, with their arrival time, so that they can be delivered at your next login (at most {} messages and {} per account). They are deleted once delivered.", o.max_messages_per_user, bytes(lang, o.max_bytes_per_user)),
        format!("<strong>Nachrichten, die ankommen, während Du nicht angemeldet bist</strong>, mit der Uhrzeit ihrer Ankunft, damit sie bei der nächsten Anmeldung zugestellt werden können (höchstens {} Nachrichten und {} pro Account). Nach der Zustellung werden sie gelöscht.", o.max_messages_per_user, bytes(lang, o.max_bytes_per_user)),
    ));
    if let Some(days) = config.archive.retention() {
        items.push(archive_item(lang, config, days));
    }
    items.push(lang.t(
        "What your client stores on the server: your <strong>vCard</strong> (public: anyone can ask for it), <strong>private data</strong> only you can read (settings, bookmarks), and <strong>PEP data</strong> it publishes (avatar, OMEMO keys, bookmarks) with who may see each.".to_owned(),
        "Was Dein Client auf dem Server ablegt: Deine <strong>vCard</strong> (öffentlich: jede*r kann sie abfragen), <strong>private Daten</strong>, die nur Du abrufen kannst (Einstellungen, Lesezeichen), und <strong>PEP-Daten</strong>, die er veröffentlicht (Avatar, OMEMO-Schlüssel, Lesezeichen), jeweils mit der Angabe, wer sie sehen darf.".to_owned(),
    ));
    if config.muc.enabled {
        items.push(lang.t(
            "For <strong>group chats</strong> that persist: their configuration, subject, who is owner, admin, member or banned (as Jabber IDs), and when someone last entered.".to_owned(),
            "Für dauerhafte <strong>Gruppenchats</strong>: ihre Einstellungen, das Thema, wer Besitzer*in, Admin, Mitglied oder gesperrt ist (als Jabber-IDs) und wann zuletzt jemand den Raum betreten hat.".to_owned(),
        ));
    }
    if config.upload.enabled {
        items.push(lang.t(
            "<strong>Files you share</strong> (uploads), as your client sends them, with what is needed to serve them and to count your quota.".to_owned(),
            "<strong>Dateien, die Du teilst</strong> (Uploads), so wie Dein Client sie schickt, mit dem, was zum Ausliefern und für Dein Kontingent nötig ist.".to_owned(),
        ));
    }
    items.push(lang.t(
        "When a message <strong>cannot be delivered</strong>: from whom to whom (Jabber IDs without resource) and why — never its content. This helps to find problems when errors pile up.".to_owned(),
        "Bei <strong>Fehlern in der Zustellung</strong> einer Nachricht: von wem an wen (Jabber-IDs ohne Ressource) und wieso die Zustellung nicht funktionierte — nicht jedoch der Inhalt der Nachricht. Dies ist nötig, um bei gehäuften Fehlern ein Problem feststellen zu können.".to_owned(),
    ));
    page.list(&items);
}

/// The message archive (XEP-0313), when the operator turned it on.
fn archive_item(lang: Lang, config: &Config, days: u64) -> String {
    let (mode_en, mode_de) = match config.archive.default_mode {
        crate::config::archive::ModeName::Always => ("all of them", "alle"),
        crate::config::archive::ModeName::Roster => (
            "those with contacts on your contact list",
            "die mit Kontakten aus Deiner Kontaktliste",
        ),
        crate::config::archive::ModeName::Never => ("none", "keine"),
    };
    let mut item = lang.t(
        format!("A <strong>message archive</strong> of your one-to-one messages, sent and received, with their time and the other party, so that all your devices show the same conversations. It keeps them for <strong>{}</strong>. Your client can choose what is archived: all messages, only those with your contacts, or none (until you choose: {mode_en}).", lang.days(days)),
        format!("Ein <strong>Nachrichtenarchiv</strong> Deiner Einzelgespräche, gesendet und empfangen, mit Uhrzeit und Gegenüber, damit alle Deine Geräte dieselben Gespräche zeigen. Es bewahrt sie <strong>{}</strong> lang auf. Dein Client kann wählen, was archiviert wird: alle Nachrichten, nur die mit Deinen Kontakten oder keine (solange Du nichts wählst: {mode_de}).", lang.span(days)),
    );
    if config.muc.enabled && config.archive.rooms {
        item.push_str(&lang.t(
            format!(" Group chats whose owners turn their archive on keep their messages the same {} (under the nicknames used in the room, never Jabber IDs).", lang.days(days)),
            format!(" Gruppenchats, deren Besitzer*innen ihr Archiv einschalten, bewahren ihre Nachrichten ebenso {} lang auf (unter den Nicknamen im Raum, nie mit Jabber-IDs).", lang.span(days)),
        ));
    }
    item
}

/// A size in bytes, in the largest whole unit.
fn bytes(lang: Lang, n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} {}", lang.t("bytes", "Bytes"))
    }
}

/// "How long?": every retention period of the configuration.
fn retention(page: &mut Page, config: &Config) {
    let lang = page.lang;
    page.h2(lang.t("For how long?", "Wie lange?"));
    let mut items = vec![accounts_retention(lang, config)];
    let block = config.accounts.reregistration_block_days;
    if block > 0 {
        items.push(lang.t(
            format!("After an account is deleted, its name cannot be registered again for {} (so that nobody receives what was meant for its old owner). For this only a keyed hash of the name is kept, not the name.", lang.days(block)),
            format!("Nach dem Löschen eines Accounts kann sein Name {} lang nicht neu registriert werden (damit niemand bekommt, was für die vorige Person bestimmt war). Dafür wird nur ein mit einem geheimen Schlüssel gebildeter Hash des Namens gespeichert, nicht der Name.", lang.span(block)),
        ));
    }
    let d = config.delivery_errors.retention_days;
    items.push(lang.t(
        format!("Delivery errors are deleted after {}.", lang.days(d)),
        format!("Zustellfehler werden nach {} gelöscht.", lang.days(d)),
    ));
    if config.muc.enabled {
        let m = config.muc.delete_unused_rooms_after_days;
        items.push(lang.t(
            format!("Group chats nobody entered for {} are deleted. The discussion history (the last {} messages of each room) is held in memory only and lost at every restart.", lang.days(m), config.muc.history_messages),
            format!("Gruppenchats, die {} lang niemand betreten hat, werden gelöscht. Der Gesprächsverlauf (die letzten {} Nachrichten jedes Raums) liegt nur im Arbeitsspeicher und geht bei jedem Neustart verloren.", lang.span(m), config.muc.history_messages),
        ));
    }
    if config.upload.enabled {
        let u = config.upload.expire_after_days;
        items.push(lang.t(
            format!(
                "Shared files are deleted {} after their upload.",
                lang.days(u)
            ),
            format!(
                "Geteilte Dateien werden {} nach dem Hochladen gelöscht.",
                lang.span(u)
            ),
        ));
    }
    if let Some(days) = config.archive.retention() {
        items.push(lang.t(
            format!(
                "Archived messages are kept {} and then deleted.",
                lang.days(days)
            ),
            format!(
                "Archivierte Nachrichten werden {} lang aufbewahrt und dann gelöscht.",
                lang.span(days)
            ),
        ));
    }
    items.push(snapshots(lang, config));
    items.push(lang.t(
        "The database is log-structured: the bytes of deleted records can remain in its files until the space is reused.".to_owned(),
        "Die Datenbank schreibt fortlaufend: Bytes gelöschter Einträge können in ihren Dateien bleiben, bis der Platz wiederverwendet wird.".to_owned(),
    ));
    page.list(&items);
}

/// Account deletion: in band at any time, and after inactivity (or never).
fn accounts_retention(lang: Lang, config: &Config) -> String {
    let n = config.accounts.delete_inactive_after_days;
    let own = lang.t(
        "You can delete your account yourself from your client at any time; everything stored for it is deleted with it.",
        "Du kannst Deinen Account jederzeit selbst aus Deinem Client löschen; alles, was dazu gespeichert ist, wird mit ihm gelöscht.",
    );
    if n == 0 {
        lang.t(
            format!("{own} Accounts are not deleted for inactivity."),
            format!("{own} Unbenutzte Accounts werden nicht automatisch gelöscht."),
        )
    } else {
        lang.t(
            format!("{own} Accounts not used (no login) for <strong>{}</strong> are deleted with everything stored for them.", lang.days(n)),
            format!("{own} Accounts, die <strong>{}</strong> lang nicht benutzt wurden (keine Anmeldung), werden mit allem, was dazu gespeichert ist, gelöscht.", lang.span(n)),
        )
    }
}

/// Snapshots: how often, and how long they are kept.
fn snapshots(lang: Lang, config: &Config) -> String {
    let s = &config.snapshots;
    if s.interval_hours == 0 {
        return lang.t(
            format!("No automatic snapshots are taken; snapshots left from before are deleted after {}.", lang.days(s.keep_days)),
            format!("Es werden keine automatischen Snapshots erstellt; ältere Snapshots werden nach {} gelöscht.", lang.days(s.keep_days)),
        );
    }
    lang.t(
        format!("A snapshot of all the data above is taken {} and kept for <strong>{}</strong>; data you deleted can remain in snapshots that long.", lang.every_hours(s.interval_hours), lang.days(s.keep_days)),
        format!("Von allen oben genannten Daten wird {} ein Snapshot erstellt und <strong>{}</strong> lang aufbewahrt; bereits gelöschte Daten können so lange in Snapshots weiter existieren.", lang.every_hours(s.interval_hours), lang.span(s.keep_days)),
    )
}

/// What is never stored: IP addresses, message content outside offline storage; the log.
fn not_stored(page: &mut Page, config: &Config, log_level: log::LevelFilter) {
    let lang = page.lang;
    page.h2(lang.t("What is not stored", "Was nicht gespeichert wird"));
    let mut items = vec![
        lang.t(
            "<strong>No IP addresses are stored</strong>: not in the database, not in the logs, not in snapshots or backups. To slow down abuse, the server counts connections and registrations per address, in memory only, and forgets them at the latest an hour after your last connection.",
            "Es werden <strong>keine IP-Adressen gespeichert</strong>: nicht in der Datenbank, nicht in Logs, nicht in Snapshots oder Backups. Gegen Missbrauch zählt der Server Verbindungen und Registrierungen pro Adresse, nur im Arbeitsspeicher, und vergisst sie spätestens eine Stunde nach Deiner letzten Verbindung.",
        ).to_owned(),
        if config.archive.enabled {
            lang.t(
                "No message content, except messages waiting for you while you are offline, until they are delivered, and the message archive described above. The delivery-error log holds no content.",
                "Keine Nachrichteninhalte, außer Nachrichten, die auf Dich warten, während Du nicht angemeldet bist, bis sie zugestellt sind, und dem oben beschriebenen Nachrichtenarchiv. Das Log der Zustellfehler enthält keine Inhalte.",
            )
        } else {
            lang.t(
                "No message content, except messages waiting for you while you are offline, until they are delivered. The delivery-error log holds no content.",
                "Keine Nachrichteninhalte, außer Nachrichten, die auf Dich warten, während Du nicht angemeldet bist, bis sie zugestellt sind. Das Log der Zustellfehler enthält keine Inhalte.",
            )
        }
        .to_owned(),
    ];
    if config.muc.enabled && config.archive.rooms {
        items.push(lang.t(
            "Who is in which group chat is never written to disk; what is said there only in rooms whose owners turned their archive on.",
            "Wer in welchem Gruppenchat ist, landet nie auf der Festplatte; was dort geschrieben wird, nur in Räumen, deren Besitzer*innen ihr Archiv eingeschaltet haben.",
        ).to_owned());
    } else if config.muc.enabled {
        items.push(lang.t(
            "Who is in which group chat, and what is said there, is never written to disk.",
            "Wer in welchem Gruppenchat ist und was dort geschrieben wird, landet nie auf der Festplatte.",
        ).to_owned());
    }
    items.push(if log_level >= log::LevelFilter::Debug {
        lang.t(
            "The server's log holds no IP addresses and no message content. It is running with debugging on at the moment and then names accounts (Jabber IDs).",
            "Das Log des Servers enthält keine IP-Adressen und keine Nachrichteninhalte. Es läuft zurzeit zur Fehlersuche ausführlicher und nennt dann auch Accounts (Jabber-IDs).",
        ).to_owned()
    } else {
        lang.t(
            "The server's log names no user, no IP address and no message content: only connection numbers, counts and the domains of other servers.",
            "Das Log des Servers nennt keine Nutzer*innen, keine IP-Adressen und keine Nachrichteninhalte: nur Verbindungsnummern, Anzahlen und die Domains anderer Server.",
        ).to_owned()
    });
    page.list(&items);
}

/// What happens with the data: published data, federation, encryption.
fn use_of_data(page: &mut Page, config: &Config) {
    let lang = page.lang;
    page.h2(lang.t(
        "What happens to this data?",
        "Was geschieht mit diesen Daten?",
    ));
    page.p(lang.t(
        "The data is used only to run this service. The server has no advertising, no tracking and no analytics. What your client publishes (the vCard, PEP data open to others, your presence for the contacts you allowed) can be read by those it is meant for.",
        "Die Daten werden nur für den Betrieb dieses Dienstes verwendet. Der Server kennt keine Werbung, kein Tracking und keine Statistik über Nutzer*innen. Was Dein Client veröffentlicht (die vCard, für andere freigegebene PEP-Daten, Deine Presence für die Kontakte, denen Du es erlaubt hast), können die abrufen, für die es bestimmt ist.",
    ));
    if config.s2s.enabled {
        let enc = if config.s2s.require_encryption {
            lang.t(
                " Connections to other servers are always encrypted (TLS).",
                " Verbindungen zu anderen Servern sind immer verschlüsselt (TLS).",
            )
        } else {
            ""
        };
        page.p(&lang.t(
            format!("Messages, presence and requests to people on other servers are delivered to those servers (federation). How they are treated there is up to those servers and their policies, not this one.{enc}"),
            format!("Nachrichten, Presence und Anfragen an Leute auf anderen Servern werden an diese Server zugestellt (Föderation). Die dortige Behandlung unterliegt nicht den Zusicherungen für diesen Server.{enc}"),
        ));
    } else {
        page.p(lang.t(
            "This server does not exchange messages with other servers: everything stays here.",
            "Dieser Server tauscht keine Nachrichten mit anderen Servern aus: alles bleibt hier.",
        ));
    }
    if !config.turn.services.is_empty() {
        let hours = config.turn.credential_ttl_secs.div_ceil(3600);
        page.p(&lang.t(
            format!("For <strong>audio and video calls</strong> your client is told of STUN and TURN servers, with TURN credentials valid for at most {hours} hours that carry no name. Your client connects to those servers itself: they see its IP address and relay the call's data, which the call encrypts. The server here keeps no record of it."),
            format!("Für <strong>Audio- und Videoanrufe</strong> erfährt Dein Client STUN- und TURN-Server, mit TURN-Zugangsdaten, die höchstens {hours} Stunden gelten und keinen Namen enthalten. Dein Client verbindet sich selbst mit diesen Servern: sie sehen seine IP-Adresse und leiten die Daten des Anrufs weiter, die der Anruf verschlüsselt. Der Server hier speichert nichts davon."),
        ));
    }
    page.p(lang.t(
        "Connections between your client and this server are always encrypted (TLS). That protects the way to the server, not the message on the server. <strong>End-to-end encryption</strong> (OMEMO, OpenPGP) passes through unchanged: then no server on the way can read your messages. It is recommended, and most clients offer it.",
        "Verbindungen zwischen Deinem Client und diesem Server sind immer verschlüsselt (TLS). Das schützt den Weg zum Server, nicht die Nachricht auf dem Server. <strong>Ende-zu-Ende-Verschlüsselung</strong> (OMEMO, OpenPGP) wird unverändert weitergereicht: dann kann kein Server unterwegs Deine Nachrichten lesen. Sie ist zu empfehlen, und die meisten Clients bieten sie an.",
    ));
}

/// The host's gateways (external components), when there are any: programs the operator
/// runs that carry messages to other networks.
fn gateways(page: &mut Page, host: &str, config: &Config) {
    let domains: Vec<String> = config
        .components
        .iter()
        .filter(|c| config.component_parent(c) == host)
        .map(|c| format!("<strong>{}</strong>", esc(&c.domain)))
        .collect();
    if domains.is_empty() {
        return;
    }
    let list = domains.join(", ");
    page.p(&page.lang.t(
        format!("<strong>Gateways</strong> to other networks run here: {list}. What you send to an address there passes through the gateway program to the other network, whose rules then apply; the gateway keeps the settings you give it. The server itself keeps nothing of it beyond what this page lists."),
        format!("Hier laufen <strong>Gateways</strong> in andere Netze: {list}. Was Du an eine Adresse dort schickst, geht durch das Gateway-Programm in das andere Netz, dessen Regeln dann gelten; das Gateway speichert die Einstellungen, die Du ihm gibst. Der Server selbst speichert davon nichts über das hinaus, was diese Seite aufzählt."),
    ));
}

/// The file-transfer proxy (XEP-0065), when it runs.
fn file_transfers(page: &mut Page, config: &Config) {
    if !config.proxy65.enabled {
        return;
    }
    page.p(page.lang.t(
        "When your client sends a file directly to another client, it may go through this server's <strong>file-transfer proxy</strong>, so that neither client learns the other's IP address. The file passes through memory only: it is never written to disk, and the proxy keeps no record of the transfer.",
        "Wenn Dein Client eine Datei direkt an einen anderen Client schickt, kann sie über den <strong>Dateiübertragungs-Proxy</strong> dieses Servers laufen, damit keiner der beiden die IP-Adresse des anderen erfährt. Die Datei geht nur durch den Arbeitsspeicher: sie wird nie auf die Platte geschrieben, und der Proxy hält nichts über die Übertragung fest.",
    ));
}

/// Push notifications (XEP-0357), when users may enable them: what is stored, and what
/// leaves the server with each notification (the sender and the body only as configured).
fn push_notifications(page: &mut Page, config: &Config) {
    let p = &config.push;
    if !p.enabled {
        return;
    }
    let lang = page.lang;
    let told: Vec<(&str, &str)> = [
        (
            p.include_sender,
            "<strong>who sent</strong> the message (the Jabber ID)",
            "<strong>wer</strong> die Nachricht geschickt hat (die Jabber-ID)",
        ),
        (
            p.include_body,
            "<strong>what it says</strong> (not for end-to-end encrypted messages)",
            "<strong>was darin steht</strong> (nicht bei Ende-zu-Ende-verschlüsselten Nachrichten)",
        ),
    ]
    .into_iter()
    .filter(|(on, _, _)| *on)
    .map(|(_, en, de)| (en, de))
    .collect();
    let (extra_en, extra_de) = if told.is_empty() {
        (
            "Not who sent it, nor what it says.".to_owned(),
            "Nicht, wer sie geschickt hat, und nicht, was darin steht.".to_owned(),
        )
    } else {
        let (en, de): (Vec<&str>, Vec<&str>) = told.into_iter().unzip();
        (
            format!("This server also tells it {}.", en.join(" and ")),
            format!(
                "Dieser Server teilt ihm außerdem mit, {}.",
                de.join(" und ")
            ),
        )
    };
    page.p(&lang.t(
        format!("If your app (on a phone, mostly) turns on <strong>push notifications</strong>, the server stores the address of the app's push service, the name of your device there and what the app gives with it (usually a secret), at most {} per account, until the app turns them off, the push service says they are no longer valid, or your account is deleted. When a message, a call or a contact request arrives while the app is not connected, the server tells that push service, so that it can wake your app: the push service (run by the app's developer, on the domain your app chose) then learns your Jabber ID and that, and when, something arrived. {extra_en} What the push service passes on to Apple or Google is up to the app's developer.", p.max_per_account),
        format!("Wenn Deine App (meist auf einem Telefon) <strong>Push-Benachrichtigungen</strong> einschaltet, speichert der Server die Adresse des Push-Dienstes der App, den Namen Deines Geräts dort und was die App dazu angibt (meist ein Geheimnis), höchstens {} pro Account, bis die App sie ausschaltet, der Push-Dienst sie für ungültig erklärt oder Dein Account gelöscht wird. Kommt eine Nachricht, ein Anruf oder eine Kontaktanfrage, während die App nicht verbunden ist, benachrichtigt der Server diesen Push-Dienst, damit er Deine App weckt: der Push-Dienst (betrieben vom Entwickler der App, unter der Domain, die Deine App gewählt hat) erfährt dann Deine Jabber-ID und dass, und wann, etwas angekommen ist. {extra_de} Was der Push-Dienst an Apple oder Google weitergibt, bestimmt der Entwickler der App.", p.max_per_account),
    ));
}

/// "Forgotten password": no recovery.
fn password(page: &mut Page) {
    let lang = page.lang;
    page.h2(lang.t("Forgotten password", "Passwort vergessen"));
    page.p(lang.t(
        "There is no password recovery. The server knows no e-mail address or phone number of yours, so nobody can check that an account is yours. Keep your password safe.",
        "Das ist ärgerlich, aber helfen kann Dir dabei niemand: Es gibt keine Wiederherstellung von Passwörtern. Der Server kennt keine E-Mail-Adresse und keine Telefonnummer von Dir, es lässt sich also nicht feststellen, ob Du wirklich die Person bist, um deren Account es geht. Bewahre Dein Passwort gut auf.",
    ));
}

/// "Who can access this data?": the operator, and how to reach them.
fn access(page: &mut Page, config: &Config) {
    let lang = page.lang;
    page.h2(lang.t(
        "Who can access this data?",
        "Wer hat Zugriff auf diese Daten?",
    ));
    let c = &config.contact;
    let addresses: Vec<String> = c
        .admin
        .iter()
        .chain(&c.support)
        .chain(&c.abuse)
        .chain(&c.security)
        .map(|u| uri_link(u))
        .collect();
    let reach = if addresses.is_empty() {
        String::new()
    } else {
        lang.t(
            format!(" Questions about your data: {}.", addresses.join(", ")),
            format!(
                " Unklarheiten und weitere Fragen zu Deinen Daten: {}.",
                addresses.join(", ")
            ),
        )
    };
    page.p(&lang.t(
        format!("Only the operator of this server, who runs it and its backups.{reach}"),
        format!("Nur wer diesen Server und seine Backups betreibt.{reach}"),
    ));
    page.p(lang.t(
        "The server software is kleiber, free software; what it stores is documented, field by field, in its data inventory.",
        "Die Server-Software ist kleiber, freie Software; was sie speichert, ist Feld für Feld in ihrer Datenaufstellung dokumentiert.",
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_mentioned_only_with_turn_services() {
        let off = Config::parse("").unwrap();
        let on = Config::parse("[[turn.services]]\ntype = \"stun\"\nhost = \"stun.example.org\"\n")
            .unwrap();
        let info = log::LevelFilter::Info;
        assert!(!page(Lang::En, "a.test", &off, info).contains("video calls"));
        let p = page(Lang::En, "a.test", &on, info);
        assert!(p.contains("video calls") && p.contains("24 hours"), "{p}");
        assert!(page(Lang::De, "a.test", &on, info).contains("Videoanrufe"));
    }

    #[test]
    fn the_archive_and_its_retention_are_stated_only_when_on() {
        let off = Config::parse("").unwrap();
        let on = Config::parse("[archive]\nenabled = true\nretention_days = 90\nrooms = true\n")
            .unwrap();
        let info = log::LevelFilter::Info;
        let p = page(Lang::En, "localhost", &off, info);
        assert!(!p.contains("message archive") && p.contains("what is said there, is never"));
        let p = page(Lang::En, "localhost", &on, info);
        assert!(
            p.contains("message archive") && p.contains("kept 90 days"),
            "{p}"
        );
        assert!(p.contains("owners turned their archive on"));
        assert!(page(Lang::De, "localhost", &on, info).contains("Nachrichtenarchiv"));
    }

    #[test]
    fn the_proxy_is_mentioned_only_when_it_runs() {
        let on = Config::parse("").unwrap();
        let off = Config::parse("[proxy65]\nenabled = false\n").unwrap();
        let info = log::LevelFilter::Info;
        assert!(page(Lang::En, "localhost", &on, info).contains("file-transfer proxy"));
        assert!(!page(Lang::En, "localhost", &off, info).contains("file-transfer proxy"));
    }

    #[test]
    fn push_says_what_leaves_the_server_as_configured() {
        let info = log::LevelFilter::Info;
        let default = page(Lang::En, "localhost", &Config::parse("").unwrap(), info);
        assert!(default.contains("push notifications"), "{default}");
        assert!(default.contains("Not who sent it, nor what it says."));
        let both = Config::parse("[push]\ninclude_sender = true\ninclude_body = true\n").unwrap();
        let p = page(Lang::En, "localhost", &both, info);
        assert!(
            p.contains("<strong>who sent</strong>") && p.contains("<strong>what it says</strong>")
        );
        let de = page(Lang::De, "localhost", &both, info);
        assert!(de.contains("Push-Benachrichtigungen") && de.contains("was darin steht"));
        let off = Config::parse("[push]\nenabled = false\n").unwrap();
        assert!(!page(Lang::En, "localhost", &off, info).contains("push notifications"));
    }

    #[test]
    fn gateways_are_named_on_their_host_only() {
        let c = Config::parse(
            "[hosts.\"a.test\"]\n[hosts.\"b.test\"]\n[[components]]\ndomain = \"irc.a.test\"\nsecret = \"s\"\n",
        )
        .unwrap();
        let info = log::LevelFilter::Info;
        assert!(page(Lang::En, "a.test", &c, info).contains("irc.a.test"));
        assert!(!page(Lang::En, "b.test", &c, info).contains("Gateways"));
        assert!(page(Lang::De, "a.test", &c, info).contains("</strong> in andere Netze"));
    }
}
