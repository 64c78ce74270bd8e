//! `rei gc`: the maintenance singleton. It ends abandoned usage sessions, expires lapsed holds, recovers jobs
//! whose worker vanished, purges old quotes and deletes assets past their retention, one bounded pass per
//! interval. Any number may run: exactly one
//! leads (a PostgreSQL advisory lock, or a lock file beside the SQLite database) and the others stand by, taking
//! the lead when the leader stops or dies.

use std::time::Duration;

use anyhow::{Context, Result};
use rei::{Engine, MaintenanceReport};

/// The role's name: the lock every `rei gc` on one database competes for.
const ROLE: &str = "gc";

/// What `rei gc` was asked to do.
pub(crate) struct Gc {
    pub(crate) database_url: String,
    /// The job queue in Redis, when the workers use one.
    pub(crate) redis_url: Option<String>,
    pub(crate) interval: Duration,
    pub(crate) once: bool,
    /// The workers' asset directory, whose files past `asset_retention` each pass deletes.
    pub(crate) assets_dir: Option<std::path::PathBuf>,
    /// Or their bucket.
    pub(crate) s3: crate::assets::S3Args,
    pub(crate) asset_retention: Duration,
}

/// Most assets one pass deletes.
const ASSET_SWEEP_MAX: usize = 10_000;

fn describe(r: &MaintenanceReport) -> String {
    format!(
        "{} sessions ended, {} holds expired ({} skipped), {} jobs recovered, {} lost tickets restored, {} quotes \
         purged",
        r.sessions_ended, r.holds_expired, r.holds_skipped, r.jobs_recovered, r.tickets_restored, r.quotes_purged
    )
}

/// Runs until Ctrl-C or SIGTERM (or after one pass with `once`), leading when it can.
pub(crate) async fn run(gc: Gc) -> Result<()> {
    let mut builder = Engine::builder().database_url(&gc.database_url).config(crate::wiring::config());
    if let Some(url) = gc.redis_url.clone().or_else(crate::wiring::redis_from_host_port) {
        builder = builder.redis_url(&url);
    }
    let engine = builder.open().await.context("failed to open the database")?;
    let result = serve(&engine, &gc).await;
    engine.close().await;
    result
}

async fn serve(engine: &Engine, gc: &Gc) -> Result<()> {
    let assets = match (&gc.assets_dir, gc.s3.is_set()) {
        (Some(dir), _) => Some(crate::assets::open(dir, &gc.s3, u64::MAX).await?),
        (None, true) => Some(crate::assets::open(std::path::Path::new("."), &gc.s3, u64::MAX).await?),
        (None, false) => None,
    };
    let mut stop = std::pin::pin!(shutdown());
    let mut leading: Option<rei::Leadership> = None;
    loop {
        // A lead lost with its connection (a database restart) is given up, and asked for again.
        if let Some(lead) = leading.as_mut()
            && !lead.still_held().await
        {
            println!("rei gc: lost the lead; asking again");
            leading = None;
        }
        if leading.is_none() {
            leading = engine.database().try_lead(ROLE).await.context("failed to ask for the gc lead")?;
            match &leading {
                Some(_) => println!("rei gc: leading on {}", engine.database().engine()),
                None => println!("rei gc: another rei gc leads; standing by"),
            }
        }
        if leading.is_some() {
            match engine.run_maintenance().await {
                Ok(report) => println!("rei gc: pass: {}", describe(&report)),
                // A failed pass is told and the next one tries again: the store may be back by then.
                Err(e) => eprintln!("rei gc: pass failed: {e}"),
            }
            if let Some(assets) = &assets {
                let now = engine.clock().now();
                match rei::sweep_assets(assets, now, gc.asset_retention, ASSET_SWEEP_MAX).await {
                    Ok(deleted) => println!("rei gc: assets: {deleted} past retention deleted"),
                    Err(e) => eprintln!("rei gc: asset sweep failed: {e}"),
                }
            }
        }
        if gc.once {
            return Ok(());
        }
        tokio::select! {
            () = &mut stop => {
                println!("rei gc: stopping");
                return Ok(());
            }
            () = tokio::time::sleep(gc.interval) => {}
        }
    }
}

/// A future that resolves on Ctrl-C or, on Unix, SIGTERM. The SIGTERM handler is installed when this is called,
/// not when the future is first polled, so a signal that comes while the caller is still starting up is not lost
/// to the default action (which would end the process at once).
pub(crate) fn shutdown() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
    }
}
