//! The admins' user management (API contract, "Roles"): `GET /api/v1/admin/users` and
//! `PATCH /api/v1/admin/users/{id}`; and, beyond the contract, `GET /api/v1/admin/users/{id}`
//! (one user, for the back office's bookings list to name its customers).

use axum::extract::{Path, State};
use boxoffice_shared::extract::{Json, Query};
use boxoffice_shared::token::{AuthUser, Role};
use boxoffice_shared::{FieldErrors, paging, problem_responses};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::User;
use crate::error::AuthError;
use crate::service::AuthService;
use crate::store::UserFilter;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// A part of the email or the full name, ignoring case.
    #[param(max_length = 254)]
    pub q: Option<String>,
    /// Only users with this role (an empty value is no filter).
    #[param(value_type = Option<Role>, inline)]
    pub role: Option<String>,
    /// 1 to 100, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A user's new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
}

problem_responses!(
    struct ListUsersProblems {
        Unauthenticated,
        Forbidden: "not an admin",
        ValidationFailed: "a bad `role`, `q`, `limit` or `cursor`, or an unknown parameter",
        Unavailable,
    }
);

/// The users, newest first (admin).
#[utoipa::path(
    get, path = "/api/v1/admin/users", tag = "auth",
    security(("bearer" = [])),
    params(ListUsersQuery),
    responses(
        (status = 200, description = "A page of users, newest first", body = UserPage),
        ListUsersProblems,
    )
)]
pub async fn list_users(
    State(service): State<AuthService>,
    caller: AuthUser,
    Query(query): Query<ListUsersQuery>,
) -> Result<Json<UserPage>, AuthError> {
    caller.require_admin().map_err(|_| AuthError::Forbidden)?;
    let mut errors = FieldErrors::default();
    let limit = errors.check("limit", paging::limit(query.limit.as_deref()));
    let after = errors.check("cursor", paging::after_id(query.cursor.as_deref()));
    let role = errors.check(
        "role",
        match query.role.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(raw) => Role::parse(raw)
                .map(Some)
                .ok_or("must be customer, staff or admin"),
        },
    );
    let search = query
        .q
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    if search.as_ref().is_some_and(|q| q.chars().count() > 254) {
        errors.push("q", "must be at most 254 characters");
    }
    let (limit, after, role) = errors
        .finish(|| Some((limit?, after?, role?)))
        .map_err(AuthError::Validation)?;
    let filter = UserFilter { search, role };
    let users = service.list_users(&filter, after, limit + 1).await?;
    let (users, next_cursor) = paging::page(users, limit, |user| user.id);
    Ok(Json(UserPage {
        items: users.into_iter().map(User::from).collect(),
        next_cursor,
    }))
}

problem_responses!(
    struct GetUserProblems {
        Unauthenticated,
        Forbidden: "not an admin",
        NotFound: "no such user (also for a malformed id)",
        Unavailable,
    }
);

/// One user (admin): who holds a booking, say.
#[utoipa::path(
    get, path = "/api/v1/admin/users/{id}", tag = "auth",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "The user", body = User),
        GetUserProblems,
    )
)]
pub async fn get_user(
    State(service): State<AuthService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<User>, AuthError> {
    caller.require_admin().map_err(|_| AuthError::Forbidden)?;
    let id = Uuid::parse_str(id.trim()).map_err(|_| AuthError::UserNotFound)?;
    Ok(Json(service.user(id).await?.into()))
}

problem_responses!(
    struct SetRoleProblems {
        MalformedBody,
        Unauthenticated,
        Forbidden: "not an admin",
        NotFound: "no such user (also for a malformed id)",
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "an unknown role, or an admin removing their own admin role",
        Unavailable,
    }
);

/// Change a user's role (admin). A demotion (from admin or staff) ends every session of the
/// user at once, so that no token keeps the rights they lost; they sign in again. A promotion
/// shows in their next access token.
#[utoipa::path(
    patch, path = "/api/v1/admin/users/{id}", tag = "auth",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id; anything that is not a UUID is not found either")),
    request_body = RoleChange,
    responses(
        (status = 200, description = "The user with the new role", body = User),
        SetRoleProblems,
    )
)]
pub async fn set_role(
    State(service): State<AuthService>,
    caller: AuthUser,
    Path(id): Path<String>,
    Json(change): Json<RoleChange>,
) -> Result<Json<User>, AuthError> {
    caller.require_admin().map_err(|_| AuthError::Forbidden)?;
    let id = Uuid::parse_str(id.trim()).map_err(|_| AuthError::UserNotFound)?;
    Ok(Json(
        service.set_role(&caller, id, change.role).await?.into(),
    ))
}
