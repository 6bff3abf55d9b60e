//! The box office in a browser: server-rendered pages for fans, organisers and door staff.
//!
//! Every page is a client of the JSON API, the same one curl and the load tool use: a page
//! handler turns the browser's request into API calls ([`api::Api`]), made in process through
//! the API's own router — with its layers, its rate limits (by the browser's address) and its
//! rules — and renders what comes back. So the pages implement no rule of their own, work the
//! same in front of one process or in front of a split deployment's gateway, and a refusal reads
//! as a plain sentence made from the API's problem `code` ([`api::Refusal`]).
//!
//! - [`session`]: who is signed in (the API's tokens in HttpOnly cookies, refreshed when the
//!   access token runs out) and the CSRF token every form carries.
//! - [`shop`]: what fans see — concerts, checkout, tickets, the waiting list; [`queue`]: a
//!   concert's waiting room, from joining its queue to the fan's turn; [`account`]: signing up,
//!   in and out.
//! - [`door`]: the check-in page of door staff; [`organiser`]: the organiser's back office
//!   (concerts and their sales), [`settings`]: its people, roles and webhooks.
//! - [`assets`]: the stylesheet and the small script, inside the binary.
//!
//! Pages work without JavaScript where they can (browse, sign in, book, pay, check in); the
//! script adds the hold's countdown, live seat counts, the queue's live place and the camera
//! scanner.

mod account;
pub mod api;
mod assets;
mod door;
mod format;
mod organiser;
mod page;
mod queue;
pub mod session;
mod settings;
mod shop;

use axum::Router;

/// The pages, served next to `api` — the router of the JSON API this process serves (every
/// service of an all-in-one process, or a gateway's routes to its services).
pub fn router(api: Router) -> Router {
    let api = api::Api::new(api);
    Router::new()
        .merge(shop::routes())
        .merge(queue::routes())
        .merge(account::routes())
        .merge(door::routes())
        .merge(organiser::routes())
        .merge(settings::routes())
        .merge(assets::routes())
        .with_state(api)
}
