//! Demo data for `serve --demo`: accounts a newcomer can log in with straight away, and a few
//! concerts when the catalog is empty — one on sale, one starting in a few minutes (to watch
//! sales close by themselves), one with a tiny seat type that is easy to sell out, and one whose
//! sales open a few minutes after the start of the demo (to watch an on-sale open).
//!
//! The demo accounts have well-known passwords and exist only when `--demo` is given; never use
//! `--demo` on a deployment that real people use.

use boxoffice_auth::domain::{Email, FullName, Password};
use boxoffice_catalog::domain::{
    Capacity, Category, Currency, Description, FutureStart, ListStatus, NewConcert, NewSeatType,
    PriceCents, SeatTypeName, TimeZoneName, Title,
};
use boxoffice_catalog::service::ListQuery;
use boxoffice_shared::token::Role;
use time::{Duration, OffsetDateTime};

use boxoffice_auth::AuthService;
use boxoffice_catalog::CatalogService;

/// A demo account: email, password, name, role.
pub const DEMO_ACCOUNTS: [(&str, &str, &str, Role); 2] = [
    (
        "admin@boxoffice.demo",
        "admin-demo-password",
        "Demo Admin",
        Role::Admin,
    ),
    (
        "fan@boxoffice.demo",
        "fan-demo-password",
        "Demo Fan",
        Role::Customer,
    ),
];

/// Where the demo concerts take place: their emails give start times on London's clocks.
const DEMO_TIME_ZONE: &str = "Europe/London";

/// Creates the demo accounts (or resets their passwords to the demo ones), and the demo
/// concerts if the catalog has none.
pub async fn load(
    auth: &AuthService,
    catalog: &CatalogService,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    for (email, password, name, role) in DEMO_ACCOUNTS {
        let email = Email::parse(email).map_err(anyhow::Error::msg)?;
        let password = Password::parse(password).map_err(anyhow::Error::msg)?;
        let name = FullName::parse(name).map_err(anyhow::Error::msg)?;
        auth.ensure_account(&email, &password, &name, role).await?;
    }
    let existing = catalog
        .list(ListQuery {
            status: ListStatus::All,
            search: None,
            category: None,
            from: None,
            to: None,
            limit: 1,
            cursor: None,
        })
        .await
        .map_err(|error| anyhow::anyhow!("reading the catalog: {error}"))?;
    if !existing.items.is_empty() {
        return Ok(());
    }
    let today = now.replace_time(time::Time::MIDNIGHT);
    let concerts = [
        (
            "Aurora Nights",
            "The Northern Lights Orchestra",
            "Royal Albert Hall",
            "An evening of symphonic rock under a sky of lights.",
            today + Duration::days(30) + Duration::hours(19) + Duration::minutes(30),
            None,
            vec![
                ("VIP", 25_000, 50),
                ("Regular", 9_500, 500),
                ("Standing", 4_500, 2_000),
            ],
        ),
        (
            "Last Call Session",
            "Midnight Trio",
            "Blue Note Club",
            "Starts a few minutes after the demo does: watch sales close by themselves.",
            now + Duration::minutes(5),
            None,
            vec![("Table", 6_000, 20), ("Bar", 3_000, 60)],
        ),
        (
            "Tiny Room Tour",
            "Solo Acoustic",
            "The Attic",
            "A front-row seat type with two seats: book them both and it is sold out.",
            today + Duration::days(10) + Duration::hours(20),
            None,
            vec![("Front Row", 12_000, 2), ("General", 3_500, 40)],
        ),
        (
            "Dawn Chorus Live",
            "The Early Risers",
            "Kew Gardens Stage",
            "Sales open three minutes after the demo starts: watch the on-sale open by itself.",
            today + Duration::days(45) + Duration::hours(18),
            Some(now + Duration::minutes(3)),
            vec![("Lawn", 5_500, 300), ("Terrace", 11_000, 40)],
        ),
    ];
    for (name, artist, venue, description, starts_at, sales_open_at, seats) in concerts {
        let concert = NewConcert {
            name: Title::parse(name).map_err(anyhow::Error::msg)?,
            artist: Title::parse(artist).map_err(anyhow::Error::msg)?,
            venue: Title::parse(venue).map_err(anyhow::Error::msg)?,
            description: Description::parse(description).map_err(anyhow::Error::msg)?,
            category: Category::parse("concert").map_err(anyhow::Error::msg)?,
            starts_at: FutureStart::parse(starts_at, now).map_err(anyhow::Error::msg)?,
            time_zone: TimeZoneName::parse(DEMO_TIME_ZONE).map_err(anyhow::Error::msg)?,
            sales_open_at,
            waiting_room: None,
            seat_types: seats
                .into_iter()
                .map(|(seat, price, capacity)| {
                    Ok(NewSeatType {
                        name: SeatTypeName::parse(seat).map_err(anyhow::Error::msg)?,
                        price_cents: PriceCents::parse(price).map_err(anyhow::Error::msg)?,
                        currency: Currency::parse("USD").map_err(anyhow::Error::msg)?,
                        capacity: Capacity::parse(capacity).map_err(anyhow::Error::msg)?,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        };
        catalog
            .create_concert(concert)
            .await
            .map_err(|error| anyhow::anyhow!("creating the demo concert {name}: {error}"))?;
    }
    tracing::info!("loaded the demo concerts");
    Ok(())
}

/// The "try it" guide printed when the demo starts.
pub fn guide(base: &str) -> String {
    let (admin_email, admin_password, ..) = DEMO_ACCOUNTS[0];
    let (fan_email, fan_password, ..) = DEMO_ACCOUNTS[1];
    format!(
        "\n  boxoffice demo is running at {base}\n\n\
         \x20 The shop:   {base}/  (organisers: {base}/organiser, door staff: {base}/door)\n\
         \x20 API docs:   {base}/docs\n\
         \x20 Demo admin: {admin_email} / {admin_password}\n\
         \x20 Demo fan:   {fan_email} / {fan_password}\n\n\
         \x20 Try it:\n\
         \x20   curl -s {base}/api/v1/concerts\n\
         \x20   curl -s {base}/api/v1/auth/login -H 'content-type: application/json' \\\n\
         \x20        -d '{{\"login\":\"{fan_email}\",\"password\":\"{fan_password}\"}}'\n\
         \x20   then POST {base}/api/v1/bookings with the access token (see README.md)\n"
    )
}
