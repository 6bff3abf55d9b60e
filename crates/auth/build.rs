//! `sqlx::migrate!` embeds the migrations when the crate compiles. Cargo does not know that, so
//! without this a migration added or changed alone would not be compiled in.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
