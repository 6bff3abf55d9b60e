//! Setting the stage of a run through the API: the admin's login, the concert (created, or
//! `--concert-id`), the users from the load-test accounts endpoint, the bookings some
//! scenarios start from, and the door staff of `doors`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::args::{LoadtestArgs, SeatTypeSpec};
use crate::client::{Answer, Call, Conn, Target, bearer};
use crate::phase::Ctx;
use crate::verify::{self, Booked, Ledger, SeatTypeInfo, User};

/// Accounts per `POST /api/v1/admin/load-test-accounts` call (the endpoint's maximum).
const ACCOUNTS_PER_CALL: usize = 10_000;
/// How many of those calls run at once: enough to overlap, few enough not to starve the
/// server's other work while it hashes nothing but writes a lot.
const ACCOUNT_CALLS_AT_ONCE: usize = 3;

/// The price of every seat type the tool creates: the checks of the sales report's revenue
/// count with it.
pub(crate) const PRICE_CENTS: i64 = 5000;

/// The concert a run books into.
pub(crate) struct Stage {
    pub(crate) concert_id: String,
    pub(crate) seat_types: Vec<SeatTypeInfo>,
    /// Pre-serialized `POST /api/v1/bookings` calls, one per seat type (auth added per user).
    pub(crate) book: Vec<Call>,
    /// When the concert's sales open, if the tool scheduled its on-sale (`--opens-in`).
    pub(crate) opens_at: Option<time::OffsetDateTime>,
    /// The concert's waiting room as the server took it.
    pub(crate) waiting_room: Option<RoomSettings>,
}

/// A concert's `waiting_room` (API v1.1, "Waiting room for on-sales").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct RoomSettings {
    pub(crate) admit_per_minute: u32,
    pub(crate) admission_ttl_seconds: u32,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
}

#[derive(Deserialize)]
struct UserView {
    id: String,
    role: String,
}

/// `POST /api/v1/auth/register`, the fields a door needs.
#[derive(Deserialize)]
struct Registered {
    user: UserView,
    refresh_token: String,
}

#[derive(Deserialize)]
struct ConcertSeatType {
    id: String,
    name: String,
    capacity: u64,
}

#[derive(Deserialize)]
pub(crate) struct Concert {
    pub(crate) id: String,
    seat_types: Vec<ConcertSeatType>,
    /// Absent from servers before v1.1.
    #[serde(default)]
    waiting_room: Option<RoomSettings>,
}

#[derive(Deserialize)]
pub(crate) struct ConcertPage {
    pub(crate) items: Vec<Concert>,
}

#[derive(Deserialize)]
struct Account {
    user_id: String,
    access_token: String,
}

#[derive(Deserialize)]
struct Accounts {
    accounts: Vec<Account>,
}

pub(crate) async fn admin_login(
    conn: &mut Conn,
    args: &LoadtestArgs,
) -> anyhow::Result<HeaderValue> {
    let (Some(email), Some(password)) = (&args.admin_email, &args.admin_password) else {
        anyhow::bail!(
            "the {} scenario needs an admin: pass --admin-email and set BOXOFFICE_ADMIN_PASSWORD",
            args.scenario.name()
        );
    };
    let body = serde_json::to_vec(&json!({ "login": email, "password": password }))?;
    let tokens: Tokens = conn
        .json(
            &Call::post("/api/v1/auth/login", Some(body.into()))?,
            StatusCode::OK,
        )
        .await
        .context("logging in as the admin")?;
    bearer(&tokens.access_token)
}

pub(crate) fn stage_of(concert: Concert, wanted: Option<&[SeatTypeSpec]>) -> anyhow::Result<Stage> {
    let seat_types: Vec<SeatTypeInfo> = match wanted {
        // A concert the tool created: its seat types in the order they were asked for.
        Some(wanted) => wanted
            .iter()
            .map(|spec| {
                concert
                    .seat_types
                    .iter()
                    .find(|seat| seat.name == spec.name)
                    .map(|seat| SeatTypeInfo {
                        id: seat.id.clone(),
                        name: seat.name.clone(),
                        capacity: seat.capacity,
                        expected: None,
                    })
                    .with_context(|| format!("the new concert has no seat type {:?}", spec.name))
            })
            .collect::<anyhow::Result<_>>()?,
        None => concert
            .seat_types
            .iter()
            .map(|seat| SeatTypeInfo {
                id: seat.id.clone(),
                name: seat.name.clone(),
                capacity: seat.capacity,
                expected: None,
            })
            .collect(),
    };
    anyhow::ensure!(
        !seat_types.is_empty(),
        "concert {} has no seat types",
        concert.id
    );
    let book = seat_types
        .iter()
        .map(|seat| {
            let body =
                serde_json::to_vec(&json!({ "concert_id": concert.id, "seat_type_id": seat.id }))?;
            Call::post("/api/v1/bookings", Some(Bytes::from(body)))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Stage {
        concert_id: concert.id,
        seat_types,
        book,
        opens_at: None,
        waiting_room: concert.waiting_room,
    })
}

/// Creates the concert of this run (or loads `--concert-id`).
pub(crate) async fn stage(
    conn: &mut Conn,
    admin: &HeaderValue,
    args: &LoadtestArgs,
    seat_types: &[SeatTypeSpec],
) -> anyhow::Result<Stage> {
    if let Some(id) = &args.concert_id {
        let concert: Concert = conn
            .json(
                &Call::get(&format!("/api/v1/concerts/{id}"))?,
                StatusCode::OK,
            )
            .await
            .context("reading --concert-id")?;
        return stage_of(concert, None);
    }
    let starts_at = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    let opens_at = args
        .opening()
        .map(|after| {
            let at = time::OffsetDateTime::now_utc() + after;
            at.replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        })
        .transpose()?;
    let mut body = json!({
        "name": format!("Load test {}", args.prefix),
        "artist": "boxoffice loadtest",
        "venue": "Loopback Arena",
        "description": format!("Created by `boxoffice loadtest --scenario {}`", args.scenario.name()),
        "starts_at": starts_at,
        "seat_types": seat_types.iter().map(|seat| json!({
            "name": seat.name, "price_cents": PRICE_CENTS, "currency": "USD", "capacity": seat.capacity,
        })).collect::<Vec<_>>(),
    });
    if let Some(at) = opens_at {
        body["sales_open_at"] = json!(at.format(&time::format_description::well_known::Rfc3339)?);
    }
    if let Some((admit_per_minute, admission_ttl_seconds)) = args.waiting_room() {
        body["waiting_room"] = json!({
            "admit_per_minute": admit_per_minute,
            "admission_ttl_seconds": admission_ttl_seconds,
        });
    }
    let concert: Concert = conn
        .json(
            &Call::post("/api/v1/concerts", Some(serde_json::to_vec(&body)?.into()))?
                .with_auth(admin.clone()),
            StatusCode::CREATED,
        )
        .await
        .context("creating the concert")?;
    let mut stage = stage_of(concert, Some(seat_types))?;
    stage.opens_at = opens_at;
    Ok(stage)
}

/// `count` customer accounts with access tokens, from the load-test accounts endpoint in
/// chunks of [`ACCOUNTS_PER_CALL`], [`ACCOUNT_CALLS_AT_ONCE`] at a time.
async fn prepare_users(
    target: &Arc<Target>,
    admin: &HeaderValue,
    count: usize,
    prefix: &str,
) -> anyhow::Result<Vec<User>> {
    let chunks: Vec<usize> = (0..count)
        .step_by(ACCOUNTS_PER_CALL)
        .map(|start| ACCOUNTS_PER_CALL.min(count - start))
        .collect();
    let admin = admin.clone();
    let prefix = prefix.to_owned();
    let lists = verify::parallel(
        target,
        ACCOUNT_CALLS_AT_ONCE,
        chunks,
        move |mut conn: Conn, size: usize| {
            let admin = admin.clone();
            let prefix = prefix.clone();
            async move {
                let body = serde_json::to_vec(&json!({ "count": size, "prefix": prefix }))?;
                let call = Call::post("/api/v1/admin/load-test-accounts", Some(body.into()))?
                    .with_auth(admin);
                let (status, body) = conn.send_raw(&call).await.map_err(|error| {
                    anyhow::anyhow!(
                        "creating load-test accounts: no answer ({})",
                        error.as_str()
                    )
                })?;
                if status == StatusCode::NOT_FOUND {
                    anyhow::bail!(
                        "the server does not offer load-test accounts; start it with \
                     --load-test-accounts on (BOXOFFICE_LOAD_TEST_ACCOUNTS=on)"
                    );
                }
                if status != StatusCode::CREATED {
                    anyhow::bail!(
                        "creating load-test accounts answered {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(500)])
                    );
                }
                let accounts: Accounts =
                    serde_json::from_slice(&body).context("the load-test accounts answer")?;
                let users = accounts
                    .accounts
                    .into_iter()
                    .map(|account| {
                        Ok(User {
                            id: account.user_id,
                            auth: bearer(&account.access_token)?,
                        })
                    })
                    .collect::<anyhow::Result<Vec<User>>>()?;
                Ok((conn, users))
            }
        },
    )
    .await?;
    let users: Vec<User> = lists.into_iter().flatten().collect();
    anyhow::ensure!(
        users.len() == count,
        "asked for {count} load-test accounts, got {}",
        users.len()
    );
    Ok(users)
}

/// `count` door staff for this run: accounts registered as `{prefix}-door-{n}@loadtest.invalid`,
/// made `staff` by the admin (`PATCH /api/v1/admin/users/{id}`), each with an access token
/// issued after the promotion by refreshing its session, since a role change shows in the
/// user's next access token (contract, "Roles"). Load-test accounts cannot be doors: they come
/// with an access token only, and no way to a next one.
pub(crate) async fn prepare_doors(
    ctx: &Ctx,
    admin: &HeaderValue,
    count: usize,
    prefix: &str,
) -> anyhow::Result<Vec<User>> {
    let prefix = prefix.to_owned();
    let admin = admin.clone();
    let mut doors = verify::parallel(
        &ctx.target,
        ACCOUNT_CALLS_AT_ONCE,
        (0..count).collect(),
        move |mut conn: Conn, door: usize| {
            let (prefix, admin) = (prefix.clone(), admin.clone());
            async move {
                let email = format!("{prefix}-door-{door}@loadtest.invalid");
                let password = uuid::Uuid::new_v4().simple().to_string();
                let body = json!({ "email": email, "password": password, "full_name": format!("Door {door}") });
                let registered: Registered = conn
                    .json(
                        &Call::post("/api/v1/auth/register", Some(serde_json::to_vec(&body)?.into()))?,
                        StatusCode::CREATED,
                    )
                    .await
                    .with_context(|| format!("registering door {door} (another --prefix if {email} exists)"))?;
                let id = registered.user.id;
                let promote = Call::patch(
                    &format!("/api/v1/admin/users/{id}"),
                    Some(Bytes::from_static(br#"{"role":"staff"}"#)),
                )?;
                let promoted: UserView = conn
                    .json(&promote.with_auth(admin), StatusCode::OK)
                    .await
                    .with_context(|| format!("making door {door} staff"))?;
                anyhow::ensure!(
                    promoted.role == "staff",
                    "making door {door} staff answered the role {:?}",
                    promoted.role
                );
                let body = json!({ "refresh_token": registered.refresh_token });
                let tokens: Tokens = conn
                    .json(
                        &Call::post("/api/v1/auth/refresh", Some(serde_json::to_vec(&body)?.into()))?,
                        StatusCode::OK,
                    )
                    .await
                    .with_context(|| format!("a token for door {door} after its promotion"))?;
                let auth = bearer(&tokens.access_token)?;
                Ok((conn, (door, User { id, auth })))
            }
        },
    )
    .await?;
    doors.sort_by_key(|(door, _)| *door);
    Ok(doors.into_iter().map(|(_, user)| user).collect())
}

/// Books one seat for each `(user, seat type)` of `who` (indices into `users` and the stage's
/// seat types), before any measured phase, on as many connections as the verification reads
/// use. Returns the ledger of the 201s and a line for every other answer, in user order; a 5xx
/// or no answer also makes its user unsure.
pub(crate) async fn book_each(
    ctx: &Ctx,
    stage: &Stage,
    users: &[User],
    who: Vec<(usize, usize)>,
) -> anyhow::Result<(Ledger, Vec<String>)> {
    let calls = who
        .into_iter()
        .map(|(user, seat_type)| {
            let found = users.get(user).context("booking for a user not prepared")?;
            let book = stage.book.get(seat_type).context("no such seat type")?;
            Ok((user, seat_type, book.clone().with_auth(found.auth.clone())))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut answers = verify::parallel(
        &ctx.target,
        ctx.concurrency.min(64),
        calls,
        |mut conn: Conn, (user, seat_type, call): (usize, usize, Call)| async move {
            let answer = conn.send(&call, true).await;
            Ok((conn, (user, seat_type, answer)))
        },
    )
    .await?;
    answers.sort_by_key(|(user, _, _)| *user);
    let mut ledger = Ledger::default();
    let mut failures = Vec::new();
    for (user, seat_type, answer) in answers {
        match answer {
            Answer::Http {
                status: StatusCode::CREATED,
                id: Some(id),
                ..
            } => ledger.confirmed.push(Booked {
                id,
                user,
                seat_type,
            }),
            answer => {
                if answer.is_server_error() {
                    ledger.unsure_users.push(user);
                }
                failures.push(format!("user {user}: {answer:?}"));
            }
        }
    }
    Ok((ledger, failures))
}

/// Admin, concert and users, timed: what every booking scenario starts with.
pub(crate) async fn prepare(
    ctx: &Ctx,
    args: &LoadtestArgs,
    seat_types: &[SeatTypeSpec],
    users: usize,
) -> anyhow::Result<(HeaderValue, Stage, Vec<User>, Duration)> {
    let started = Instant::now();
    let mut conn = Conn::new(ctx.target.clone());
    let admin = admin_login(&mut conn, args).await?;
    // Accounts first: a server that offers no load-test accounts is then refused before a
    // concert is created, instead of left with a "Load test …" concert on sale.
    args.note(&format!("preparing {users} users…"));
    let prepared = prepare_users(&ctx.target, &admin, users, &args.prefix).await?;
    let stage = stage(&mut conn, &admin, args, seat_types).await?;
    args.note(&format!("concert {} ready", stage.concert_id));
    let setup = started.elapsed();
    args.note(&format!(
        "{users} users ready in {:.2} s",
        setup.as_secs_f64()
    ));
    Ok((admin, stage, prepared, setup))
}
