//! The command line of `boxoffice loadtest`: [`LoadtestArgs`], the [`Scenario`] to run and the
//! parsers of its values (seat types, durations, the account prefix).

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Every user books once at the same moment; verify nothing oversold, duplicated or lost.
    Onsale,
    /// Steady book/cancel traffic for --duration; verify the end state.
    Churn,
    /// Catalog reads (list, details, availability) for --duration or --requests.
    Browse,
    /// Sell a tiny seat type out, then hammer it: every answer must be 409 sold_out.
    Soldout,
    /// Every user holds a seat, then pays (some after a declined card) or walks away; wait for
    /// the unpaid holds to expire, then verify the holds and bookings (needs a short
    /// --hold-ttl on the server).
    Checkout,
    /// Every user holds a seat at once, so that the holds expire together; measure how soon the
    /// seats come back and how sold-out answers fare meanwhile (needs a short --hold-ttl).
    Expiry,
    /// Every user books a seat; then --doors door staff scan every ticket 1 to 3 times at
    /// once, some scans re-sent with their nonce; verify exactly one check-in per ticket.
    Doors,
    /// A seat type sold out by half the users while the rest join its waiting list; then half
    /// the holders cancel while the back of the line tries to book: verify the seats are
    /// offered in line order and never reach the public.
    Waitlist,
    /// A large queue joins a concert's waiting room before its sales open, polls until
    /// admitted, and books with the admission: verify nobody booked without one, the admission
    /// order and the admission rate (--admit-per-minute).
    Waitingroom,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Onsale => "onsale",
            Scenario::Churn => "churn",
            Scenario::Browse => "browse",
            Scenario::Soldout => "soldout",
            Scenario::Checkout => "checkout",
            Scenario::Expiry => "expiry",
            Scenario::Doors => "doors",
            Scenario::Waitlist => "waitlist",
            Scenario::Waitingroom => "waitingroom",
        }
    }
}

/// A seat type to create: `NAME:CAPACITY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatTypeSpec {
    pub name: String,
    pub capacity: u64,
}

impl SeatTypeSpec {
    /// `VIP:50,Regular:500`.
    pub fn onsale_default() -> Vec<Self> {
        vec![
            Self {
                name: "VIP".to_owned(),
                capacity: 50,
            },
            Self {
                name: "Regular".to_owned(),
                capacity: 500,
            },
        ]
    }

    fn parse(text: &str) -> Result<Self, String> {
        let (name, capacity) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not NAME:CAPACITY"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{text:?} has no name"));
        }
        let capacity: u64 = capacity
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: the capacity is not a number"))?;
        if !(1..=1_000_000).contains(&capacity) {
            return Err(format!("{text:?}: capacity must be 1..=1000000"));
        }
        Ok(Self {
            name: name.to_owned(),
            capacity,
        })
    }
}

/// The value of `--seat-types`: one argument, several seat types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatTypeList(pub Vec<SeatTypeSpec>);

fn parse_seat_type_list(text: &str) -> Result<SeatTypeList, String> {
    parse_seat_types(text).map(SeatTypeList)
}

/// Parses `VIP:50,Regular:500`.
pub fn parse_seat_types(text: &str) -> Result<Vec<SeatTypeSpec>, String> {
    let specs: Vec<SeatTypeSpec> = text
        .split(',')
        .map(SeatTypeSpec::parse)
        .collect::<Result<_, _>>()?;
    if specs.len() > 20 {
        return Err("at most 20 seat types".to_owned());
    }
    for (i, spec) in specs.iter().enumerate() {
        if specs[..i].iter().any(|other| other.name == spec.name) {
            return Err(format!("seat type {:?} is named twice", spec.name));
        }
    }
    Ok(specs)
}

/// Parses a share of the users: `0.1` or `10%`, from 0 to 1.
pub fn parse_share(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let share = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|percent| percent / 100.0),
        None => text.parse::<f64>(),
    }
    .map_err(|_| format!("{text:?} is not a share like 0.1 or 10%"))?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{text:?}: a share is from 0 to 1 (0% to 100%)"))
    }
}

/// Parses `10s`, `500ms`, `2m` or plain seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" | "min" => number * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if !(seconds > 0.0 && seconds <= 600.0) {
        // Access tokens live 15 minutes: longer runs would end in 401s, not in a measurement.
        return Err(format!(
            "{text:?}: a duration must be over 0 and at most 10 minutes"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// How long an admission of the `waitingroom` scenario's room lasts: an hour, longer than any
/// run (the wait is refused past ten minutes), so that every admitted user can still book once
/// the last one is admitted.
pub const ADMISSION_TTL_SECONDS: u32 = 3600;

/// How long the admissions of `waitingroom` take by default (`--duration` overrides it): the
/// default `--admit-per-minute` spreads the users over this.
const WAITINGROOM_ADMISSIONS: Duration = Duration::from_secs(30);

fn default_prefix() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    // The last hex digits of a v7 id are random: unique enough per run.
    format!("lt-{}", &id[id.len() - 10..])
}

fn parse_prefix(text: &str) -> Result<String, String> {
    if (1..=40).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(text.to_owned())
    } else {
        Err("1 to 40 characters of a-z, 0-9 and -".to_owned())
    }
}

/// `boxoffice loadtest`: measure a deployment and prove it did not oversell.
///
/// Runs against `--target` (loopback only unless `--allow-remote`) and exits non-zero when the
/// verdict is FAIL. The server must run with `--load-test-accounts on` for the scenarios that
/// book (users are created in bulk through the admin endpoint).
///
/// Tests build the arguments the way the command line does:
/// `LoadtestArgs::try_parse_from(["loadtest", "--target", &url, "--users", "2000"])`.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest")]
pub struct LoadtestArgs {
    /// The server's base URL (plain HTTP).
    #[arg(
        long,
        env = "BOXOFFICE_LOADTEST_TARGET",
        default_value = "http://127.0.0.1:8080"
    )]
    pub target: String,
    /// What to run.
    #[arg(long, value_enum, default_value_t = Scenario::Onsale)]
    pub scenario: Scenario,
    /// Users to prepare (accounts with access tokens); in `onsale` each books once, in
    /// `checkout` each checks out once, in `expiry` each holds one seat (the tool prepares
    /// one more user and --concurrency others besides, who book a sold-out seat type), in
    /// `doors` each books one seat, as many as there are seats.
    #[arg(long, short = 'u', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: u32,
    /// Requests in flight at once, and connections (exactly this many, kept alive).
    #[arg(long, short = 'c', default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// Seat types of the concert to create, `NAME:CAPACITY,…` [default: VIP:50,Regular:500;
    /// soldout: Tiny:5]. `expiry` shapes its own concert (a seat type of --users seats and a
    /// sold-out one) and refuses this.
    #[arg(long, value_parser = parse_seat_type_list)]
    pub seat_types: Option<SeatTypeList>,
    /// Use this existing concert instead of creating one. The expectation still assumes the
    /// tool is its only buyer, so bookings made by anyone else make the verdict FAIL.
    #[arg(long)]
    pub concert_id: Option<String>,
    /// How long the measured phase may last (`10s`, `500ms`, `2m`; at most 10 minutes)
    /// [default: 10s for churn, browse and soldout, unless --requests is given; onsale and
    /// checkout end when every user has tried, doors when every scan is sent]. In `expiry`:
    /// how long the sold-out answers are measured before the first hold expires [default: 5s].
    /// In `waitingroom`: how long the admissions should take, which sets the default
    /// --admit-per-minute [default: 30s].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// `onsale` only: the concert's sales open this long after it is created (`3s`, `500ms`),
    /// so that the on-sale opens during the run. Users start at once and retry each 409
    /// `sales_not_open` until their booking is decided; no booking may be made before the
    /// instant. `waitingroom`: every user joins the queue before this instant [default: 3 s
    /// and 1 ms per user].
    #[arg(long, value_parser = parse_duration)]
    pub opens_in: Option<Duration>,
    /// `waitingroom` only: the waiting room's `admit_per_minute` [default: --users spread over
    /// --duration, 30 s unless given].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub admit_per_minute: Option<u32>,
    /// `checkout` only: the share of users whose first card is declined (402
    /// `payment_declined`); they pay again with a good card (`0.1` or `10%`).
    #[arg(long, value_parser = parse_share, default_value = "0.1")]
    pub decline_share: f64,
    /// `checkout` only: the share of users who hold a seat and never pay, so that their
    /// holds expire during the run (`0.2` or `20%`; with --decline-share at most 1).
    #[arg(long, value_parser = parse_share, default_value = "0.2")]
    pub abandon_share: f64,
    /// `doors` only: how many door staff scan the tickets (accounts registered for the run and
    /// made `staff` by the admin).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    doors: u32,
    /// `doors` only: the share of tickets whose first scan the scanner sends again with the
    /// same nonce once it is answered, as after a lost answer (`0.05` or `5%`).
    #[arg(long, value_parser = parse_share, default_value = "0.05")]
    pub retry_share: f64,
    /// At most this many requests in the measured phase (`onsale`, `checkout`: at most this
    /// many users try; `doors`: at most this many scans are sent; `waitingroom`: at most this
    /// many users join).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Also measure `GET /healthz` at the same concurrency and print ratios to it.
    #[arg(long)]
    pub baseline: bool,
    /// Print the report as one JSON document (and no progress line).
    #[arg(long)]
    pub json: bool,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// How long one request may take before it counts as a transport error.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Email of an admin account (creates the concert and the users, reads the sales report,
    /// makes the `doors` scenario's door staff).
    #[arg(long, env = "BOXOFFICE_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password of that admin account.
    #[arg(long, env = "BOXOFFICE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Prefix of the load-test accounts' emails and of the concert's name [default: random].
    #[arg(long, value_parser = parse_prefix, default_value_t = default_prefix(), hide_default_value = true)]
    pub prefix: String,
}

impl LoadtestArgs {
    pub fn users(&self) -> usize {
        self.users as usize
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency as usize
    }

    pub fn doors(&self) -> usize {
        self.doors as usize
    }

    /// The measured phase's time limit: `--duration`, or 10 s when neither it nor
    /// `--requests` was given.
    pub fn phase_duration(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(duration), _) => Some(duration),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    /// When the concert the run creates opens its sales, counted from its creation: `--opens-in`,
    /// or for `waitingroom` long enough for every user to join before (3 s, and 1 ms per user).
    pub(crate) fn opening(&self) -> Option<Duration> {
        match (self.opens_in, self.scenario) {
            (Some(after), _) => Some(after),
            (None, Scenario::Waitingroom) => {
                Some(Duration::from_secs(3) + Duration::from_millis(self.users.into()))
            }
            (None, _) => None,
        }
    }

    /// The `waitingroom` scenario's room: `admit_per_minute` (the flag, or the users spread over
    /// `--duration`) and [`ADMISSION_TTL_SECONDS`]; `None` for the other scenarios.
    pub(crate) fn waiting_room(&self) -> Option<(u32, u32)> {
        if self.scenario != Scenario::Waitingroom {
            return None;
        }
        let rate = self.admit_per_minute.unwrap_or_else(|| {
            let seconds = self
                .duration
                .unwrap_or(WAITINGROOM_ADMISSIONS)
                .as_secs_f64();
            (f64::from(self.users) * 60.0 / seconds)
                .ceil()
                .clamp(1.0, 1_000_000.0) as u32
        });
        Some((rate, ADMISSION_TTL_SECONDS))
    }

    pub(crate) fn seat_types_or(&self, default: &[SeatTypeSpec]) -> Vec<SeatTypeSpec> {
        self.seat_types
            .as_ref()
            .map_or_else(|| default.to_vec(), |list| list.0.clone())
    }

    /// A line on stderr about the run's progress, unless the report goes out as JSON.
    pub(crate) fn note(&self, message: &str) {
        if !self.json {
            eprintln!("{message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_types_parse() {
        assert_eq!(
            parse_seat_types("VIP:50,Regular:500").unwrap(),
            SeatTypeSpec::onsale_default()
        );
        assert!(parse_seat_types("VIP").is_err());
        assert!(parse_seat_types("VIP:0").is_err());
        assert!(parse_seat_types("VIP:1,VIP:2").is_err());
        assert!(parse_seat_types(":5").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("11m").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        LoadtestArgs::command().debug_assert();
    }

    #[test]
    fn arguments_parse_like_the_command_line() {
        let args = LoadtestArgs::try_parse_from([
            "loadtest",
            "--target",
            "http://127.0.0.1:9",
            "--scenario",
            "churn",
            "--users",
            "20",
            "-c",
            "4",
            "--requests",
            "100",
            "--seat-types",
            "A:1,B:2",
        ])
        .unwrap();
        assert_eq!(args.seat_types_or(&[]).len(), 2);
        assert_eq!(args.scenario, Scenario::Churn);
        assert_eq!((args.users(), args.concurrency()), (20, 4));
        assert_eq!(args.phase_duration(), None);
        assert!(args.prefix.starts_with("lt-"));
        assert!(LoadtestArgs::try_parse_from(["loadtest", "--concurrency", "0"]).is_err());
        assert!(LoadtestArgs::try_parse_from(["loadtest", "--prefix", "Upper"]).is_err());
        assert_eq!((args.decline_share, args.abandon_share), (0.1, 0.2));
        let checkout = LoadtestArgs::try_parse_from([
            "loadtest",
            "--scenario",
            "checkout",
            "--decline-share",
            "25%",
            "--abandon-share",
            "0",
        ])
        .unwrap();
        assert_eq!(checkout.scenario, Scenario::Checkout);
        assert_eq!(
            (checkout.decline_share, checkout.abandon_share),
            (0.25, 0.0)
        );
        assert_eq!((args.doors(), args.retry_share), (8, 0.05));
        let doors = LoadtestArgs::try_parse_from([
            "loadtest",
            "--scenario",
            "doors",
            "--doors",
            "3",
            "--retry-share",
            "10%",
        ])
        .unwrap();
        assert_eq!(doors.scenario, Scenario::Doors);
        assert_eq!((doors.doors(), doors.retry_share), (3, 0.1));
        assert!(LoadtestArgs::try_parse_from(["loadtest", "--doors", "0"]).is_err());
        assert_eq!((args.opening(), args.waiting_room()), (None, None));
    }

    #[test]
    fn the_waiting_room_defaults_spread_the_users_over_the_duration() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["loadtest", "--scenario", "waitingroom", "--users", "2000"];
            argv.extend_from_slice(extra);
            LoadtestArgs::try_parse_from(argv).unwrap()
        };
        let defaults = parse(&[]);
        assert_eq!(defaults.scenario, Scenario::Waitingroom);
        assert_eq!(defaults.waiting_room(), Some((4000, ADMISSION_TTL_SECONDS)));
        assert_eq!(defaults.opening(), Some(Duration::from_secs(5)));
        let slower = parse(&["--duration", "2m", "--opens-in", "10s"]);
        assert_eq!(slower.waiting_room(), Some((1000, ADMISSION_TTL_SECONDS)));
        assert_eq!(slower.opening(), Some(Duration::from_secs(10)));
        let given = parse(&["--admit-per-minute", "600"]);
        assert_eq!(given.waiting_room(), Some((600, ADMISSION_TTL_SECONDS)));
        assert!(LoadtestArgs::try_parse_from(["loadtest", "--admit-per-minute", "0"]).is_err());
    }

    #[test]
    fn shares_parse() {
        assert_eq!(parse_share("0.1").unwrap(), 0.1);
        assert_eq!(parse_share("20%").unwrap(), 0.2);
        assert_eq!(parse_share(" 1 ").unwrap(), 1.0);
        assert_eq!(parse_share("0").unwrap(), 0.0);
        for refused in ["-0.1", "1.5", "101%", "a lot", "NaN"] {
            assert!(parse_share(refused).is_err(), "{refused}");
        }
    }
}
