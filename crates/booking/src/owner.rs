//! Each concert's sales on one owner: in a split deployment on PostgreSQL, one Booking instance at
//! a time takes a concert's new bookings and holds, and the others send them there.
//!
//! Two instances writing the same seat types wait for each other's row locks on every batch, so
//! adding instances used to slow a sale down. With an owner per concert, each concert's writes
//! are batched by one writer and instances add capacity for as many concerts as there are
//! instances.
//!
//! - **Leases** (`concert_owners`, `booking_instances`, on the database's clock): an instance
//!   renews its own every second ([`TICK`]) for [`LEASE`]; one that dies (kill -9) loses them
//!   when they run out, and the next write for one of its concerts claims it for another instance.
//!   A concert nobody wrote to for [`IDLE`] is let go; an instance that owns more than its share
//!   of the concerts lets the surplus go, so a sale that starts on one instance spreads.
//! - **Routing** ([`Owners::route`]): a write for a concert with a live owner goes there; one
//!   without an owner goes to the live instance with the fewest concerts (ties broken by a hash of
//!   concert and instance, so every instance picks the same), which claims it.
//! - **Not a lock.** Every booking rule is still decided in the writers' transactions against the
//!   schema, whoever owns the concert: when a lease changes hands and two instances both sell for
//!   a moment, or a forward cannot reach the owner and the write is made where it arrived, the
//!   sale stays exact. Leases decide who does the work fast, never whether it is right.

pub mod forward;
mod lease;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use boxoffice_shared::component::Url;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub use lease::Lease;

/// How often an instance renews its leases and reads everyone's.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a lease lasts unless renewed: an owner killed is replaced within `LEASE + TICK`.
pub const LEASE: Duration = Duration::from_secs(3);
/// A concert this instance owns but nobody wrote to for this long is let go.
pub const IDLE: Duration = Duration::from_secs(30);

/// Where a concert's write is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// On this instance.
    Here,
    /// On the instance at this root URL.
    There(Url),
}

/// This instance's view of who owns what, refreshed every [`TICK`].
pub struct Owners {
    me: Uuid,
    url: Url,
    pool: PgPool,
    state: Mutex<State>,
    /// Claims one at a time, so a burst of first writes makes one claim.
    claiming: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// The live instances, as of the last tick.
    live: Vec<Lease>,
    /// Each concert's owner, as of the last tick and this instance's claims since.
    owners: HashMap<Uuid, Lease>,
    /// The concerts this instance owns, with when a write for each last came in.
    used: HashMap<Uuid, Instant>,
    /// Instances a forward could not connect to, until when they are passed over.
    unreachable: HashMap<Uuid, Instant>,
}

impl Owners {
    /// Registers this instance (`me`, reached at `url`) and starts renewing its leases on
    /// `tasks`; at `stop` it gives every lease up, so the others take over at once.
    pub async fn start(
        me: Uuid,
        url: Url,
        pool: PgPool,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, sqlx::Error> {
        let owners = Arc::new(Self {
            me,
            url,
            pool,
            state: Mutex::new(State::default()),
            claiming: tokio::sync::Mutex::new(()),
        });
        owners.tick().await?;
        let ticking = owners.clone();
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                if let Err(error) = ticking.tick().await {
                    tracing::warn!(%error, "renewing this instance's concert leases failed");
                }
            }
            if let Err(error) = lease::leave(&ticking.pool, ticking.me).await {
                tracing::warn!(%error, "giving up this instance's concert leases failed");
            }
        });
        Ok(owners)
    }

    /// Where a write for `concert` is made. `forwarded`: another instance sent it here as the
    /// owner; it is then made here whatever this instance's view says (never sent on again).
    pub async fn route(&self, concert: Uuid, forwarded: bool) -> Route {
        let claim = {
            let mut state = self.lock();
            match state.owners.get(&concert) {
                Some(owner) if owner.instance == self.me => {
                    state.used.insert(concert, Instant::now());
                    return Route::Here;
                }
                Some(_) if forwarded => return Route::Here,
                Some(owner) if state.reachable(owner.instance) => {
                    return Route::There(owner.url.clone());
                }
                // Its owner did not answer a moment ago: sell here until its lease runs out.
                Some(_) => return Route::Here,
                None => match state.preferred(concert, self.me) {
                    Some(target) if target.instance != self.me && !forwarded => {
                        return Route::There(target.url.clone());
                    }
                    Some(target) => target.instance == self.me,
                    None => true,
                },
            }
        };
        if !claim {
            return Route::Here;
        }
        match self.claim(concert).await {
            Ok(owner) if owner.instance == self.me || forwarded => Route::Here,
            Ok(owner) => Route::There(owner.url),
            Err(error) => {
                tracing::warn!(%error, %concert, "claiming a concert failed; selling it here");
                Route::Here
            }
        }
    }

    /// The owner of `concert` as of the last tick and this instance's claims since.
    pub fn owner_of(&self, concert: Uuid) -> Option<Url> {
        self.lock()
            .owners
            .get(&concert)
            .map(|owner| owner.url.clone())
    }

    /// Notes that a forward to the instance at `url` could not connect: it is passed over until
    /// its leases run out or it answers a tick again.
    pub fn unreachable(&self, url: &Url) {
        let mut state = self.lock();
        let instance = state
            .owners
            .values()
            .chain(&state.live)
            .find(|lease| &lease.url == url)
            .map(|lease| lease.instance);
        if let Some(instance) = instance {
            state.unreachable.insert(instance, Instant::now() + LEASE);
        }
    }

    /// Takes `concert` for this instance unless another instance holds a live lease on it;
    /// returns its owner either way.
    async fn claim(&self, concert: Uuid) -> Result<Lease, sqlx::Error> {
        let _one_at_a_time = self.claiming.lock().await;
        if let Some(owner) = self.lock().owners.get(&concert) {
            return Ok(owner.clone());
        }
        let owner = lease::claim(&self.pool, concert, self.me, &self.url, LEASE).await?;
        let mut state = self.lock();
        if owner.instance == self.me {
            tracing::info!(%concert, "this instance now sells the concert");
            state.used.insert(concert, Instant::now());
        }
        state.owners.insert(concert, owner.clone());
        state.count_owned(self.me);
        Ok(owner)
    }

    /// One renewal: this instance is alive, keeps the concerts written to lately (up to its
    /// share), lets go of the rest, and reads every live instance and owner.
    async fn tick(&self) -> Result<(), sqlx::Error> {
        let (keep, release) = self.lock().split_leases(self.me);
        lease::renew(&self.pool, self.me, &self.url, &keep, &release, LEASE).await?;
        let live = lease::live_instances(&self.pool).await?;
        let owners = lease::owners(&self.pool).await?;
        let mut state = self.lock();
        let now = Instant::now();
        state.unreachable.retain(|_, until| *until > now);
        let mine: HashSet<Uuid> = owners
            .iter()
            .filter(|(_, owner)| owner.instance == self.me)
            .map(|(concert, _)| *concert)
            .collect();
        state.used.retain(|concert, _| mine.contains(concert));
        state.live = live;
        state.owners = owners;
        state.count_owned(self.me);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Publishes how many concerts this instance owns (`booking_concerts_owned`).
    fn count_owned(&self, me: Uuid) {
        let owned = self.owners.values().filter(|owner| owner.instance == me);
        metrics::gauge!("booking_concerts_owned").set(owned.count() as f64);
    }

    fn reachable(&self, instance: Uuid) -> bool {
        !self.unreachable.contains_key(&instance)
    }

    /// The live, reachable instance that should own `concert`: the one owning the fewest
    /// concerts, ties broken by a hash of concert and instance. `None` before the first tick.
    fn preferred(&self, concert: Uuid, me: Uuid) -> Option<&Lease> {
        let mut load: HashMap<Uuid, usize> = HashMap::new();
        for owner in self.owners.values() {
            *load.entry(owner.instance).or_default() += 1;
        }
        self.live
            .iter()
            .filter(|lease| lease.instance == me || self.reachable(lease.instance))
            .min_by_key(|lease| {
                let owned = load.get(&lease.instance).copied().unwrap_or(0);
                (owned, std::cmp::Reverse(affinity(concert, lease.instance)))
            })
    }

    /// This instance's concerts split into those to renew and those to let go: idle ones, and
    /// those beyond its share of every owned concert over the live instances (so a sale that
    /// started on one instance spreads over the others). The concerts let go first are the ones
    /// the hash gives to others.
    fn split_leases(&mut self, me: Uuid) -> (Vec<Uuid>, Vec<Uuid>) {
        let now = Instant::now();
        let (mut keep, mut release) = (Vec::new(), Vec::new());
        for (concert, used) in &self.used {
            match now.duration_since(*used) < IDLE {
                true => keep.push(*concert),
                false => release.push(*concert),
            }
        }
        let share = self.owners.len().div_ceil(self.live.len().max(1));
        if keep.len() > share {
            keep.sort_by_key(|concert| std::cmp::Reverse(affinity(*concert, me)));
            release.extend(keep.drain(share..));
        }
        for concert in &release {
            self.used.remove(concert);
            self.owners.remove(concert);
        }
        (keep, release)
    }
}

/// A stable pseudo-random rank of `instance` for `concert`: the same on every instance, and
/// spread evenly, so ties between equally loaded instances split the concerts between them.
fn affinity(concert: Uuid, instance: Uuid) -> u64 {
    let mixed = concert.as_u128() ^ instance.as_u128().rotate_left(64);
    let folded = (mixed as u64) ^ ((mixed >> 64) as u64);
    // SplitMix64's finaliser: every input bit moves every output bit.
    let mut z = folded.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(n: u128) -> Lease {
        Lease {
            instance: Uuid::from_u128(n),
            url: Url::parse(&format!("http://127.0.0.1:{}", 9000 + n)).unwrap(),
        }
    }

    fn state(live: &[u128], owners: &[(u128, u128)]) -> State {
        State {
            live: live.iter().map(|n| instance(*n)).collect(),
            owners: owners
                .iter()
                .map(|(concert, owner)| (Uuid::from_u128(*concert), instance(*owner)))
                .collect(),
            ..State::default()
        }
    }

    #[test]
    fn a_concert_without_owner_goes_to_the_instance_owning_fewest() {
        let state = state(&[1, 2, 3], &[(100, 1), (101, 1), (102, 2)]);
        let me = Uuid::from_u128(1);
        for concert in 200..220 {
            let target = state.preferred(Uuid::from_u128(concert), me).unwrap();
            assert_eq!(target.instance, Uuid::from_u128(3));
        }
    }

    #[test]
    fn ties_are_broken_the_same_way_everywhere_and_spread_the_concerts() {
        let state = state(&[1, 2], &[]);
        let mut per_instance = HashMap::<Uuid, usize>::new();
        for concert in 0..1000 {
            let concert = Uuid::from_u128(concert * 7919 + 13);
            let seen_by_1 = state.preferred(concert, Uuid::from_u128(1)).unwrap();
            let seen_by_2 = state.preferred(concert, Uuid::from_u128(2)).unwrap();
            assert_eq!(seen_by_1, seen_by_2);
            *per_instance.entry(seen_by_1.instance).or_default() += 1;
        }
        assert!(
            per_instance
                .values()
                .all(|count| (400..=600).contains(count)),
            "{per_instance:?}"
        );
    }

    #[test]
    fn unreachable_instances_are_passed_over_except_by_themselves() {
        let mut state = state(&[1, 2], &[(100, 1)]);
        state
            .unreachable
            .insert(Uuid::from_u128(2), Instant::now() + LEASE);
        let concert = Uuid::from_u128(300);
        assert_eq!(
            state
                .preferred(concert, Uuid::from_u128(1))
                .unwrap()
                .instance,
            Uuid::from_u128(1)
        );
        assert_eq!(
            state
                .preferred(concert, Uuid::from_u128(2))
                .unwrap()
                .instance,
            Uuid::from_u128(2)
        );
    }

    #[test]
    fn an_instance_lets_go_of_idle_concerts_and_of_those_beyond_its_share() {
        let me = 1;
        let mut state = state(&[1, 2], &[(100, me), (101, me), (102, me), (103, 2)]);
        let now = Instant::now();
        for concert in [100, 101, 102] {
            state.used.insert(Uuid::from_u128(concert), now);
        }
        // Four owned concerts over two instances: a share of two.
        let (keep, release) = state.split_leases(Uuid::from_u128(me));
        assert_eq!((keep.len(), release.len()), (2, 1));
        assert!(!state.owners.contains_key(&release[0]));
        assert!(!state.used.contains_key(&release[0]));

        let mut state = self::state(&[1, 2], &[(100, me), (101, me)]);
        state.used.insert(Uuid::from_u128(100), now);
        state
            .used
            .insert(Uuid::from_u128(101), now - IDLE - Duration::from_secs(1));
        let (keep, release) = state.split_leases(Uuid::from_u128(me));
        assert_eq!(keep, vec![Uuid::from_u128(100)]);
        assert_eq!(release, vec![Uuid::from_u128(101)]);
    }
}
