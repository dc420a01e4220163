//! The start page `/`: what this server is, whether one can register now and how,
//! recommended clients, connection details, group chat, file upload, contact addresses.
//! One function per section; every configured value is escaped.

use super::discovery;
use super::html::{esc, link, nav_link, uri_link, Lang, Page};
use crate::config::{Config, RoomCreators};

/// A client: (name, home page).
type Client = (&'static str, &'static str);

/// Recommended clients per platform: (platform in English, in German, clients).
const CLIENTS: &[(&str, &str, &[Client])] = &[
    (
        "Android",
        "Android",
        &[
            ("Conversations", "https://conversations.im/"),
            (
                "Monocles Chat",
                "https://f-droid.org/packages/de.monocles.chat/",
            ),
        ],
    ),
    (
        "iPhone and iPad",
        "iPhone und iPad",
        &[
            ("Monal", "https://monal-im.org/"),
            ("Siskin IM", "https://siskin.im/"),
        ],
    ),
    (
        "Desktop (Linux, Windows, macOS)",
        "Desktop (Linux, Windows, macOS)",
        &[
            ("Gajim", "https://gajim.org/"),
            ("Dino", "https://dino.im/"),
            ("Profanity", "https://profanity-im.github.io/"),
            ("Psi", "https://psi-im.org/"),
        ],
    ),
    (
        "Web browser",
        "Im Browser",
        &[
            ("Converse.js", "https://conversejs.org/"),
            ("Movim", "https://movim.eu/"),
        ],
    ),
];

/// The whole start page for `host`; `registration_open` is the live state.
pub fn page(lang: Lang, host: &str, config: &Config, registration_open: bool) -> String {
    let mut page = Page::new(lang, "/", host);
    intro(&mut page, host, config);
    registration(&mut page, host, registration_open);
    inactivity(&mut page, config.accounts.delete_inactive_after_days);
    clients(&mut page);
    connection(&mut page, host, config);
    if config.muc.enabled {
        group_chat(&mut page, host, config);
    }
    if config.upload.enabled {
        upload(&mut page, config);
    }
    contact(&mut page, config);
    let privacy = nav_link(
        lang,
        "/privacy",
        lang.t("privacy policy", "Datenschutzerklärung"),
    );
    page.h2(lang.t("Privacy", "Datenschutz"));
    page.p(&lang.t(
        format!("What this server stores about you, and for how long: the {privacy}. It stores no IP addresses."),
        format!("Was dieser Server über Dich speichert und wie lange: die {privacy}. IP-Adressen werden nicht gespeichert."),
    ));
    page.finish()
}

/// What this is, and the other domains served here.
fn intro(page: &mut Page, host: &str, config: &Config) {
    let lang = page.lang;
    let h = esc(host);
    page.p(&lang.t(
        format!("<strong>{h}</strong> is a Jabber server: chat over <a href=\"https://xmpp.org/\">XMPP</a>, the open standard for instant messaging. With an account here you can talk to people on this server and on every other XMPP server, much as e-mail works across providers."),
        format!("<strong>{h}</strong> ist ein Jabber-Server: Chat über <a href=\"https://xmpp.org/\">XMPP</a>, den offenen Standard für Instant Messaging. Mit einem Account hier kannst Du mit Leuten auf diesem und auf jedem anderen XMPP-Server schreiben, ganz wie bei E-Mail über verschiedene Anbieter hinweg."),
    ));
    let others: Vec<String> = config
        .hosts
        .keys()
        .filter(|d| d.as_str() != host)
        .map(|d| format!("<strong>{}</strong>", esc(d)))
        .collect();
    if !others.is_empty() {
        page.p(&lang.t(
            format!("This server also serves: {}.", others.join(", ")),
            format!("Dieser Server bedient außerdem: {}.", others.join(", ")),
        ));
    }
}

/// Whether one can register now, and how.
fn registration(page: &mut Page, host: &str, open: bool) {
    let lang = page.lang;
    let h = esc(host);
    if open {
        page.boxed(
            "open",
            lang.t("Registration is open", "Registrierung geöffnet"),
            &lang.t(
                format!("You can create an account on <strong>{h}</strong> right from your client: choose “Create account” (or “Register”), enter the server <strong>{h}</strong>, a user name of your choice (the part before <strong>@{h}</strong>) and a password. No e-mail address or phone number is asked for — which also means nobody can reset a forgotten password, so keep it safe."),
                format!("Einen Account auf <strong>{h}</strong> legst Du ganz einfach in Deinem Client an: wähle „Account erstellen“ (oder „Registrieren“), gib den Server <strong>{h}</strong> an, einen Benutzernamen Deiner Wahl (das vor <strong>@{h}</strong>) und ein Passwort. Nach E-Mail-Adresse oder Telefonnummer wird nicht gefragt — deshalb kann ein vergessenes Passwort auch niemand zurücksetzen: bewahre es gut auf."),
            ),
        );
    } else {
        page.boxed(
            "closed",
            lang.t("Registration is closed", "Registrierung geschlossen"),
            &lang.t(
                format!("<strong>{h}</strong> is closed for registration at the moment: no new accounts can be created. Existing accounts keep working. Try again in a while."),
                format!("Zurzeit können auf <strong>{h}</strong> keine neuen Accounts angelegt werden. Bestehende Accounts funktionieren weiter. Versuch es später noch einmal."),
            ),
        );
    }
}

/// The reminder that unused accounts go (nothing when they are kept).
fn inactivity(page: &mut Page, days: u64) {
    if days == 0 {
        return;
    }
    let lang = page.lang;
    page.p(&lang.t(
        format!(
            "Please remember that accounts unused for {} (no login) are deleted.",
            lang.days(days)
        ),
        format!(
            "Denk bitte daran, dass Accounts {} nach der letzten Anmeldung gelöscht werden.",
            lang.span(days)
        ),
    ));
}

/// Recommended clients per platform.
fn clients(page: &mut Page) {
    let lang = page.lang;
    page.h2(lang.t("Clients", "Clients"));
    page.p(lang.t(
        "Any XMPP client works. These are good ones:",
        "Jeder XMPP-Client funktioniert. Diese sind gut:",
    ));
    let items: Vec<String> = CLIENTS
        .iter()
        .map(|(en, de, apps)| {
            let apps: Vec<String> = apps.iter().map(|(name, url)| link(url, name)).collect();
            format!("{}: {}", esc(lang.t(en, de)), apps.join(", "))
        })
        .collect();
    page.list(&items);
}

/// The address, how clients find the server, ports and web endpoints.
fn connection(page: &mut Page, host: &str, config: &Config) {
    let lang = page.lang;
    let h = esc(host);
    page.h2(lang.t("Connecting", "Verbindung"));
    let mut items = vec![lang.t(
        format!("Your address (Jabber ID) is <strong><em>name</em>@{h}</strong>; the domain is <strong>{h}</strong>."),
        format!("Deine Adresse (Jabber-ID) ist <strong><em>name</em>@{h}</strong>; die Domain ist <strong>{h}</strong>."),
    )];
    items.push(lang.t(
        "Clients find the server by themselves (DNS SRV records): the address and the password are all you need to enter.".to_owned(),
        "Clients finden den Server von selbst (DNS-SRV-Einträge): Adresse und Passwort sind alles, was Du eingeben musst.".to_owned(),
    ));
    let ports = |addrs: &[std::net::SocketAddr]| -> Vec<String> {
        let mut p: Vec<u16> = addrs.iter().map(|a| a.port()).filter(|p| *p != 0).collect();
        p.dedup();
        p.iter().map(u16::to_string).collect()
    };
    let (starttls, direct) = (
        ports(&config.listen.c2s_starttls),
        ports(&config.listen.c2s_direct_tls),
    );
    if !starttls.is_empty() || !direct.is_empty() {
        items.push(lang.t(
            format!("Should a client ask: server <strong>{h}</strong>, port {} (STARTTLS){}. Connections are always encrypted (TLS).",
                or_none(&starttls, "–"), direct_ports(lang, &direct)),
            format!("Falls ein Client fragt: Server <strong>{h}</strong>, Port {} (STARTTLS){}. Verbindungen sind immer verschlüsselt (TLS).",
                or_none(&starttls, "–"), direct_ports(lang, &direct)),
        ));
    }
    let web = discovery::links(config, host);
    if !web.is_empty() {
        let urls: Vec<String> = web
            .iter()
            .map(|(_, u)| format!("<code>{}</code>", esc(u)))
            .collect();
        items.push(lang.t(
            format!(
                "Web clients connect over {} and find these by themselves (XEP-0156).",
                urls.join(lang.t(" or ", " oder "))
            ),
            format!(
                "Web-Clients verbinden sich über {} und finden das von selbst (XEP-0156).",
                urls.join(lang.t(" or ", " oder "))
            ),
        ));
    }
    page.list(&items);
}

/// `a, b` or `none` when empty.
fn or_none(list: &[String], none: &str) -> String {
    if list.is_empty() {
        none.to_owned()
    } else {
        list.join(", ")
    }
}

/// ", or port N with direct TLS" when there is one.
fn direct_ports(lang: Lang, direct: &[String]) -> String {
    if direct.is_empty() {
        return String::new();
    }
    lang.t(
        format!(" or port {} (direct TLS)", direct.join(", ")),
        format!(" oder Port {} (direktes TLS)", direct.join(", ")),
    )
}

/// The group-chat service and who may create rooms.
fn group_chat(page: &mut Page, host: &str, config: &Config) {
    let lang = page.lang;
    let d = esc(&config.muc.domain_of(host));
    page.h2(lang.t("Group chat", "Gruppenchats"));
    let who = match &config.muc.create_rooms {
        RoomCreators::Policy(p) if p == "anyone" => lang.t(
            "Anyone on the XMPP network can create rooms here.",
            "Räume anlegen kann hier jede und jeder im XMPP-Netz.",
        ),
        RoomCreators::Policy(p) if p == "local" => lang.t(
            "Accounts of this server can create rooms.",
            "Accounts dieses Servers können Räume anlegen.",
        ),
        _ => lang.t(
            "New rooms are created by the operator.",
            "Neue Räume legt der Betreiber an.",
        ),
    };
    page.p(&lang.t(
        format!("Group chats live at <strong>{d}</strong>: join <strong><em>room</em>@{d}</strong> from your client. {who} The discussion history is kept in memory only, never on disk."),
        format!("Gruppenchats gibt es unter <strong>{d}</strong>: tritt <strong><em>raum</em>@{d}</strong> in Deinem Client bei. {who} Der Gesprächsverlauf liegt nur im Arbeitsspeicher, nie auf der Festplatte."),
    ));
}

/// File sharing (XEP-0363).
fn upload(page: &mut Page, config: &Config) {
    let lang = page.lang;
    let u = &config.upload;
    page.h2(lang.t("Sharing files", "Dateien teilen"));
    let quota = if u.quota_mb > 0 {
        lang.t(
            format!(
                " Each account can have up to {} MB stored at once.",
                u.quota_mb
            ),
            format!(
                " Jeder Account kann bis zu {} MB gleichzeitig gespeichert haben.",
                u.quota_mb
            ),
        )
    } else {
        String::new()
    };
    page.p(&lang.t(
        format!("You can share files of up to {} MB from your client.{quota} Files are deleted {} after their upload.", u.max_file_size_mb, lang.days(u.expire_after_days)),
        format!("Du kannst aus Deinem Client Dateien bis {} MB teilen.{quota} Dateien werden {} nach dem Hochladen gelöscht.", u.max_file_size_mb, lang.span(u.expire_after_days)),
    ));
}

/// XEP-0157 contact addresses.
fn contact(page: &mut Page, config: &Config) {
    let lang = page.lang;
    let c = &config.contact;
    page.h2(lang.t("Contact", "Kontakt"));
    let groups: [(&str, &str, &Vec<String>); 4] = [
        ("Support", "Hilfe", &c.support),
        ("Administrator", "Administration", &c.admin),
        ("Abuse", "Missbrauch", &c.abuse),
        ("Security", "Sicherheit", &c.security),
    ];
    let items: Vec<String> = groups
        .iter()
        .filter(|(_, _, list)| !list.is_empty())
        .map(|(en, de, list)| {
            let links: Vec<String> = list.iter().map(|u| uri_link(u)).collect();
            format!("{}: {}", esc(lang.t(en, de)), links.join(", "))
        })
        .collect();
    if items.is_empty() {
        page.p(lang.t(
            "The operator has not published a contact address.",
            "Der Betreiber hat keine Kontaktadresse angegeben.",
        ));
    } else {
        page.list(&items);
    }
}
