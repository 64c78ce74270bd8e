//! Runs the README's embedding walkthrough for real, through `rei::Engine`: on a SQLite file in a temporary
//! directory that it removes afterwards, or, given a URL, on that database (a `postgres://…` URL needs the
//! `postgres` feature). It prints what it did.
//!
//! Run: `cargo run --locked --example embed` or
//! `cargo run --locked --example embed --features postgres -- postgres://user@host/db`
#![expect(clippy::print_stdout, reason = "an example shows what it does")]

mod walkthrough;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let lines = match std::env::args().nth(1) {
        Some(url) => {
            let engine = rei::Engine::open(&url).await?;
            let lines = walkthrough::run(&engine).await;
            engine.close().await;
            lines?
        }
        None => walkthrough::run_on_temp_sqlite().await?,
    };
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
