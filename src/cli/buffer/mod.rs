//! `twilio-notify-proxy buffer ...`: list, show, replay, remove and purge the durable buffer.
//!
//! Owns these subcommands' arguments and the operator's view of the store. A redb store is
//! opened exclusively (redb locks the file), so it works on a stopped proxy; against a running
//! one it says so and changes nothing (hand-off files left by an upgrade are adopted first). A
//! PostgreSQL store works on a running fleet. Replay uses the same
//! [`UpstreamGroup::deliver_once`] as the proxy itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;

use super::output::OutputFormat;
use backend::OperatorStore;

mod backend;
use crate::buffer::{BufferedMeta, Table};
use crate::clock::now_ms;
use crate::config::Config;
use crate::delivery::{new_balancer, UpstreamGroup};
use crate::metrics::Metrics;
use crate::policy::{settle, RetryPolicy};

#[derive(Debug, clap::Args)]
pub struct BufferArgs {
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: BufferCommand,
}

#[derive(Debug, Subcommand)]
pub enum BufferCommand {
    /// List buffered notifications (pending, or the dead-letter table with --dead).
    List {
        #[arg(long)]
        dead: bool,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Show one message: its metadata and the exact request that will be (re)delivered.
    Show { id: u64 },
    /// Deliver now, once: one message, every pending one (--all) or every dead-letter one
    /// (--dead). Delivered (or finally answered) messages are removed; failures stay.
    Replay {
        #[arg(required_unless_present_any = ["all", "dead"], conflicts_with_all = ["all", "dead"])]
        id: Option<u64>,
        #[arg(long, conflicts_with = "dead")]
        all: bool,
        #[arg(long)]
        dead: bool,
    },
    /// Delete one message, pending or dead-letter (e.g. one whose record cannot be read).
    Remove { id: u64 },
    /// Delete dead-letter messages (all, or those received longer ago than --older-than).
    Purge {
        /// Required, so a purge of pending messages can never happen by accident.
        #[arg(long, required = true)]
        dead: bool,
        /// e.g. 1h, 7d.
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
    },
}

pub fn run(args: BufferArgs) -> Result<()> {
    let config = Config::load_without_keys(&args.config)?;
    let buffer = config.buffer.as_ref().ok_or_else(|| {
        anyhow!(
            "{}: no buffer section, so there is no store to manage",
            args.config.display()
        )
    })?;
    let store = OperatorStore::open(buffer)?;
    match args.command {
        BufferCommand::List { dead, format } => list(&store, dead, format),
        BufferCommand::Show { id } => show(&store, id),
        BufferCommand::Remove { id } => {
            if store.remove(Table::Pending, id)? || store.remove(Table::DeadLetter, id)? {
                println!("{id}: removed");
                Ok(())
            } else {
                bail!("no buffered message with id {id}")
            }
        }
        BufferCommand::Replay { id, all, dead } => replay(&config, store, id, all, dead),
        BufferCommand::Purge {
            dead: _,
            older_than,
        } => {
            let cutoff = match older_than {
                Some(d) => {
                    let age = humantime::parse_duration(&d)
                        .map_err(|e| anyhow!("--older-than {d:?}: {e} (write e.g. 1h, 7d)"))?;
                    Some(
                        now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
                    )
                }
                None => None,
            };
            let n = store.purge_dead(cutoff)?;
            println!("purged {n} dead-letter message(s)");
            Ok(())
        }
    }
}

fn age(meta: &BufferedMeta) -> String {
    let secs = now_ms().saturating_sub(meta.message.received_at_ms) / 1000;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn list(store: &OperatorStore, dead: bool, format: OutputFormat) -> Result<()> {
    let table = if dead {
        Table::DeadLetter
    } else {
        Table::Pending
    };
    let metas = store.list(table)?;
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&metas)?),
        OutputFormat::Text => {
            println!(
                "{:>8}  {:<16} {:>9} {:>8}  {:<36} last error",
                "id", "route", "age", "attempts", "message id"
            );
            for m in &metas {
                println!(
                    "{:>8}  {:<16} {:>9} {:>8}  {:<36} {}",
                    m.id,
                    m.message.route,
                    age(m),
                    m.message.attempts,
                    m.message.message_id.as_deref().unwrap_or("-"),
                    m.dead_reason.as_deref().unwrap_or(&m.message.last_error)
                );
            }
            println!(
                "{} message(s) in {}",
                metas.len(),
                if dead {
                    "the dead-letter table"
                } else {
                    "pending"
                }
            );
        }
    }
    Ok(())
}

fn show(store: &OperatorStore, id: u64) -> Result<()> {
    let (table, message) = store
        .get(id)?
        .ok_or_else(|| anyhow!("no buffered message with id {id}"))?;
    let out = serde_json::json!({
        "table": table,
        "meta": message.meta,
        "request": String::from_utf8_lossy(&message.request),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn replay(
    config: &Config,
    store: OperatorStore,
    id: Option<u64>,
    all: bool,
    dead: bool,
) -> Result<()> {
    let targets: Vec<(Table, u64)> = match (id, all, dead) {
        (Some(id), _, _) => {
            let (table, _) = store
                .get(id)?
                .ok_or_else(|| anyhow!("no buffered message with id {id}"))?;
            vec![(table, id)]
        }
        (None, true, _) => store
            .list(Table::Pending)?
            .iter()
            .map(|m| (Table::Pending, m.id))
            .collect(),
        (None, _, true) => store
            .list(Table::DeadLetter)?
            .iter()
            .map(|m| (Table::DeadLetter, m.id))
            .collect(),
        _ => bail!("give a message id, --all or --dead"),
    };
    let metrics = Metrics::new();
    let mut groups = std::collections::HashMap::new();
    for u in &config.upstreams {
        let (lb, membership) = new_balancer(u)?;
        groups.insert(
            u.name.clone(),
            UpstreamGroup::new(
                u.clone(),
                Arc::new(lb),
                membership,
                metrics.upstream(&u.name),
            ),
        );
    }
    let mut failed = 0;
    for (table, id) in targets {
        let Some((_, message)) = store.get(id)? else {
            continue;
        };
        let Some(group) = groups.get(&message.meta.message.upstream) else {
            println!(
                "{id}: upstream group {:?} is not in this config; skipped",
                message.meta.message.upstream
            );
            failed += 1;
            continue;
        };
        let deadline = Instant::now() + group.config.response_timeout;
        // Judged as the live path and the redelivery worker judge it: the route's retry policy
        // (the documented defaults for a route no longer configured).
        let policy = config
            .routes
            .iter()
            .find(|r| r.name == message.meta.message.route)
            .map_or_else(RetryPolicy::default, |r| r.retry.clone());
        let result = store.block_on(group.deliver_once(&message.request, Some(deadline), None));
        let status = result.as_ref().ok().map(|a| a.answer.status);
        match (settle(status, &policy), result) {
            (settlement, Ok(answer)) if settlement.is_final() => {
                store.remove(table, id)?;
                println!("{id}: delivered, handler answered {}", answer.answer.status);
            }
            (_, Ok(answer)) => {
                failed += 1;
                println!("{id}: handler answered {}; kept", answer.answer.status);
            }
            (_, Err(e)) => {
                failed += 1;
                println!("{id}: {e}; kept");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} message(s) could not be delivered and stay in the buffer");
    }
    Ok(())
}
