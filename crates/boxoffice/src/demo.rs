//! Demo data for `serve --demo`: accounts a newcomer can log in with straight away.
//!
//! The demo accounts have well-known passwords and exist only when `--demo` is given; never use
//! `--demo` on a deployment that real people use.

use boxoffice_auth::domain::{Email, FullName, Password};
use boxoffice_shared::token::Role;

use crate::app::Services;

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

/// Creates the demo accounts (or resets their passwords to the demo ones).
pub async fn load(services: &Services) -> anyhow::Result<()> {
    for (email, password, name, role) in DEMO_ACCOUNTS {
        let email = Email::parse(email).map_err(anyhow::Error::msg)?;
        let password = Password::parse(password).map_err(anyhow::Error::msg)?;
        let name = FullName::parse(name).map_err(anyhow::Error::msg)?;
        services
            .auth
            .ensure_account(&email, &password, &name, role)
            .await?;
    }
    Ok(())
}

/// The "try it" guide printed when the demo starts.
pub fn guide(base: &str) -> String {
    let (admin_email, admin_password, ..) = DEMO_ACCOUNTS[0];
    let (fan_email, fan_password, ..) = DEMO_ACCOUNTS[1];
    format!(
        "\n  boxoffice demo is running at {base}\n\n\
         \x20 API docs:   {base}/docs\n\
         \x20 Demo admin: {admin_email} / {admin_password}\n\
         \x20 Demo fan:   {fan_email} / {fan_password}\n\n\
         \x20 Try it:\n\
         \x20   curl -s {base}/api/v1/auth/login -H 'content-type: application/json' \\\n\
         \x20        -d '{{\"login\":\"{fan_email}\",\"password\":\"{fan_password}\"}}'\n"
    )
}
